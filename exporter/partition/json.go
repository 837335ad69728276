package partition

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// object is a JSON object edited in place: fields this package does not know
// (Docker's container_config, vendor extensions) are kept as raw bytes, so
// a partition loses nothing a round trip through typed structs would drop.
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
// newline. Maps come out with sorted keys, which makes the output a function
// of the input's content alone: the same input always gives the same bytes.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
