package tdfs

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// object is a JSON object edited in place, as in exporter/partition: fields
// this package does not know are kept as raw bytes.
type object map[string]json.RawMessage

func decodeObject(data []byte, what string) (object, error) {
	var o object
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", what, err)
	}
	if o == nil {
		return nil, fmt.Errorf("%s is null", what)
	}
	return o, nil
}

// get decodes field key into v; a missing or null field leaves v alone.
func (o object) get(key string, v any) error {
	raw, ok := o[key]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	return nil
}

func (o object) set(key string, v any) error {
	raw, err := marshal(v)
	if err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	o[key] = raw
	return nil
}

// marshal is json.Marshal without HTML escaping and without the trailing
// newline; maps come out with sorted keys, so output depends on content only.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
