package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// tensorEntry is one tensor's header value as written; pointers tell a
// missing key from a zero one. Unknown keys are ignored, as the reference
// implementation ignores them.
type tensorEntry struct {
	DType       *string        `json:"dtype"`
	Shape       *[]json.Number `json:"shape"`
	DataOffsets *[]json.Number `json:"data_offsets"`
}

// ParseHeader parses the JSON header of a file whose data section is
// dataSize bytes long, and checks every tensor against it. Errors name the
// tensor. It is pure, and fuzzed.
func ParseHeader(data []byte, dataSize int64) (*Header, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("header is not a JSON object")
	}
	h := &Header{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("header is not valid JSON: %w", err)
		}
		name, _ := tok.(string) // object keys are always strings
		if seen[name] {
			return nil, fmt.Errorf("tensor %q is in the header twice", name)
		}
		seen[name] = true
		if name == MetadataKey {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("header is not valid JSON at %s: %w", MetadataKey, err)
			}
			if h.Metadata, err = parseMetadata(raw); err != nil {
				return nil, err
			}
			continue
		}
		var e tensorEntry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("tensor %q: %s", name, describeJSONError(err))
		}
		t, err := e.tensor(name, dataSize)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		h.Tensors = append(h.Tensors, t)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("header is not valid JSON: %w", err)
	}
	// The reference pads the header with spaces; anything else after the
	// object is damage.
	if len(bytes.TrimRight(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, fmt.Errorf("header has data after its JSON object")
	}
	sortTensors(h.Tensors)
	if err := checkTiling(h.Tensors, dataSize); err != nil {
		return nil, err
	}
	return h, nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s must be an object of strings", MetadataKey)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: value of %q is not a string", MetadataKey, k)
		}
		out[k] = s
	}
	return out, nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s must not be a JSON %s", te.Field, te.Value)
		}
		return fmt.Sprintf("entry must be an object with dtype, shape and data_offsets, not a JSON %s", te.Value)
	}
	return "invalid JSON: " + err.Error()
}

func (e tensorEntry) tensor(name string, dataSize int64) (Tensor, error) {
	switch {
	case e.DType == nil:
		return Tensor{}, fmt.Errorf("no dtype")
	case e.Shape == nil:
		return Tensor{}, fmt.Errorf("no shape")
	case e.DataOffsets == nil:
		return Tensor{}, fmt.Errorf("no data_offsets")
	}
	t := Tensor{Name: name, DType: DType(*e.DType)}
	for _, d := range *e.Shape {
		v, err := strconv.ParseInt(d.String(), 10, 64)
		if err != nil || v < 0 {
			return Tensor{}, fmt.Errorf("shape has %s, not a dimension (an integer from 0 to %d)", d, int64(1<<63-1))
		}
		t.Shape = append(t.Shape, v)
	}
	if t.Shape == nil {
		t.Shape = []int64{} // a scalar
	}
	if len(*e.DataOffsets) != 2 {
		return Tensor{}, fmt.Errorf("data_offsets has %d numbers, want 2 (begin and end)", len(*e.DataOffsets))
	}
	var off [2]int64
	for i, d := range *e.DataOffsets {
		v, err := strconv.ParseInt(d.String(), 10, 64)
		if err != nil || v < 0 {
			return Tensor{}, fmt.Errorf("data_offsets has %s, not an offset (an integer from 0 to %d)", d, int64(1<<63-1))
		}
		off[i] = v
	}
	t.Begin, t.End = off[0], off[1]
	if t.Begin > t.End {
		return Tensor{}, fmt.Errorf("data_offsets [%d, %d] end before they begin", t.Begin, t.End)
	}
	want, err := ByteSize(t.DType, t.Shape)
	if err != nil {
		return Tensor{}, err
	}
	if t.Size() != want {
		return Tensor{}, fmt.Errorf("data_offsets [%d, %d] hold %d bytes, but %s %v needs %d", t.Begin, t.End, t.Size(), t.DType, t.Shape, want)
	}
	if t.End > dataSize {
		return Tensor{}, fmt.Errorf("data_offsets [%d, %d] run past the end of the data section (%d bytes; truncated file?)", t.Begin, t.End, dataSize)
	}
	return t, nil
}

// checkTiling checks that tensors, in data order, cover the data section
// exactly once.
func checkTiling(ts []Tensor, dataSize int64) error {
	var end int64
	prev := ""
	for _, t := range ts {
		switch {
		case t.Begin < end:
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap those of tensor %q, which end at %d", t.Name, t.Begin, t.End, prev, end)
		case t.Begin > end && prev == "":
			return fmt.Errorf("tensor %q: data begins at %d, leaving bytes 0 to %d of the data section to no tensor", t.Name, t.Begin, t.Begin)
		case t.Begin > end:
			return fmt.Errorf("tensor %q: data begins at %d, leaving a gap after tensor %q, which ends at %d", t.Name, t.Begin, prev, end)
		}
		if t.End > end || prev == "" {
			end, prev = t.End, t.Name
		}
	}
	if end != dataSize {
		if prev == "" {
			return fmt.Errorf("header has no tensors but the data section holds %d bytes", dataSize)
		}
		return fmt.Errorf("data section holds %d bytes, but the last tensor, %q, ends at %d: %d bytes after it belong to no tensor", dataSize, prev, end, dataSize-end)
	}
	return nil
}
