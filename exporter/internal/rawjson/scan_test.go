package rawjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// reference is what Decode and Marshal did before they avoided copies:
// encoding/json all the way. Output bytes must not change, or every
// partition digest would.
func reference(data []byte) ([]byte, error) {
	var o map[string]json.RawMessage
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, err
	}
	if o == nil {
		return nil, errors.New("null") // Decode refuses null on purpose
	}
	return encode(o)
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

var samples = []string{
	`{}`,
	` { "b" : [ 1 , 2 ,{"x" : "y"} ] , "a":"<&>" , "c" : null , "d":true,"e":-1.5e3 } `,
	`{"a":1,"a":2}`,
	`{"\u0041":"x","é":"\u00e9","tab\t":"\"q\"","\u2028":1,"ctl\u0001":2}`,
	"{\"bad\xff\":1,\"z\":\"\xff\"}",
	`{"nested":{"z":1,"a":{"k":[{},[],""]}},"s":"a\\\"}]"}`,
	`{"big":123456789012345678901234567890,"f":0.1}`,
	`{"h":{"EMPTY_layer":true,"empty_layer":false,"Empty_Layer":1},"i":{"empty\u005flayer":"x"},"j":{"x":{"empty_layer":1}}}`,
}

func TestMarshalDecodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range samples {
		check(t, []byte(s))
	}
}

func FuzzMarshalDecode(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { check(t, data) })
}

func check(t *testing.T, data []byte) {
	t.Helper()
	want, werr := reference(data)
	o, err := Decode(data, "x")
	if (err != nil) != (werr != nil) {
		t.Fatalf("%q: Decode error %v, encoding/json error %v", data, err, werr)
	}
	if err != nil {
		return
	}
	got, err := Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q:\ngot  %s\nwant %s", data, got, want)
	}
	if canon, err := AppendCanonical(nil, data); err != nil || !bytes.Equal(canon, want) {
		t.Fatalf("AppendCanonical(%q) = %s, %v; want %s", data, canon, err, want)
	}
	for k, v := range o {
		var probe struct {
			V json.RawMessage `json:"empty_layer"`
		}
		if json.Unmarshal(v, &probe) == nil && v[0] == '{' {
			got, _ := Lookup(v, "empty_layer")
			if !bytes.Equal(got, probe.V) {
				t.Fatalf("Lookup(%s): %s, encoding/json finds %s", v, got, probe.V)
			}
		}
		var elems []json.RawMessage
		if json.Unmarshal(v, &elems) != nil {
			continue
		}
		got, err := Array(v, k)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := Marshal(got)
		b, _ := encode(elems)
		if !bytes.Equal(a, b) {
			t.Fatalf("array %q: %s, want %s", v, a, b)
		}
	}
}
