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

// Decode parses data as a JSON object; what names it in errors.
func Decode(data []byte, what string) (Object, error) {
	var o Object
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", what, err)
	}
	if o == nil {
		return nil, fmt.Errorf("%s is null", what)
	}
	return o, nil
}

// Get decodes field key into v; a missing or null field leaves v alone.
func (o Object) Get(key string, v any) error {
	raw, ok := o[key]
	if !ok || bytes.Equal(raw, []byte("null")) {
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
// newline. Maps (an Object too) come out with sorted keys.
func Marshal(v any) ([]byte, error) {
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
