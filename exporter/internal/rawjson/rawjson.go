// Package rawjson edits JSON objects in place, for the exporters that
// rewrite manifests, configs and indexes. Fields the caller does not touch
// (Docker's container_config, vendor extensions) stay as raw bytes, so an
// edit loses nothing that a round trip through typed structs would drop, and
// output is a function of the content alone: the same input gives the same
// bytes.
package rawjson

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Object is a JSON object whose values are kept as raw bytes.
type Object map[string]json.RawMessage

// Decode parses data as a JSON object; what names it in errors. The values
// are slices of data, not copies (a config near its size cap is edited
// without holding it twice), so data must not change while the Object is
// in use.
func Decode(data []byte, what string) (Object, error) {
	o, ok := decodeObject(data)
	if !ok {
		// Let encoding/json say what is wrong and where.
		var std map[string]json.RawMessage
		if err := json.Unmarshal(data, &std); err != nil {
			return nil, fmt.Errorf("%s is not a JSON object: %w", what, err)
		}
		if std == nil {
			return nil, fmt.Errorf("%s is null", what)
		}
		return nil, fmt.Errorf("%s is not a JSON object", what)
	}
	return o, nil
}

// Array splits a JSON array into its elements, slices of data like
// Decode's values; null is a nil slice.
func Array(data []byte, what string) ([]json.RawMessage, error) {
	out, ok := decodeArray(data)
	if !ok {
		var std []json.RawMessage
		if err := json.Unmarshal(data, &std); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return nil, fmt.Errorf("%s is not a JSON array", what)
	}
	return out, nil
}

// Get decodes field key into v; a missing or null field leaves v alone. An
// *Object or a *[]json.RawMessage gets slices of the value, as Decode.
func (o Object) Get(key string, v any) error {
	raw, ok := o[key]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	switch v := v.(type) {
	case *Object:
		inner, err := Decode(raw, fmt.Sprintf("field %q", key))
		if err != nil {
			return err
		}
		*v = inner
		return nil
	case *[]json.RawMessage:
		elems, err := Array(raw, fmt.Sprintf("field %q", key))
		if err != nil {
			return err
		}
		*v = elems
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	return nil
}

// Set replaces field key with v encoded by Marshal.
func (o Object) Set(key string, v any) error {
	raw, err := Marshal(v)
	if err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	o[key] = raw
	return nil
}

// Marshal is json.Marshal without HTML escaping and without the trailing
// newline. Maps (an Object too) come out with sorted keys. An Object and a
// []json.RawMessage are written straight into one buffer of the final size,
// their raw values compacted as encoding/json does, with the same bytes.
func Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case Object:
		if v == nil {
			return []byte("null"), nil
		}
		return appendObject(make([]byte, 0, objectSize(v)), v)
	case []json.RawMessage:
		if v == nil {
			return []byte("null"), nil
		}
		return appendArray(make([]byte, 0, arraySize(v)), v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Edit applies fn to the object under key (an empty one if the key is
// missing or null) and stores the result back: a nested edit, such as a
// manifest's config descriptor or an image config's config.Labels, in one
// call.
func (o Object) Edit(key string, fn func(Object) error) error {
	var inner Object
	if err := o.Get(key, &inner); err != nil {
		return err
	}
	if inner == nil {
		inner = Object{}
	}
	if err := fn(inner); err != nil {
		return err
	}
	return o.Set(key, inner)
}

// SetAll sets several fields; see Set.
func (o Object) SetAll(fields map[string]any) error {
	for k, v := range fields {
		if err := o.Set(k, v); err != nil {
			return err
		}
	}
	return nil
}

// SetLabels edits the labels of an image config (config.Labels): it sets
// the given labels and removes the named ones.
func SetLabels(imageConfig Object, set map[string]string, remove ...string) error {
	return imageConfig.Edit("config", func(runConfig Object) error {
		return runConfig.Edit("Labels", func(labels Object) error {
			for _, k := range remove {
				delete(labels, k)
			}
			return labels.SetAll(toAny(set))
		})
	})
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// EditDiffIDs replaces the rootfs.diff_ids of an image config with what fn
// returns for them.
func EditDiffIDs(imageConfig Object, fn func([]json.RawMessage) []json.RawMessage) error {
	return imageConfig.Edit("rootfs", func(rootfs Object) error {
		var diffIDs []json.RawMessage
		if err := rootfs.Get("diff_ids", &diffIDs); err != nil {
			return err
		}
		return rootfs.Set("diff_ids", fn(diffIDs))
	})
}
