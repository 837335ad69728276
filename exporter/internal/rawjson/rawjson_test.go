package rawjson

import "testing"

func TestSetLabelsKeepsUnknownFields(t *testing.T) {
	cfg, err := Decode([]byte(`{"zz":{"a":1},"config":{"Env":["A=b"],"Labels":{"keep":"1","drop":"2"}},"container_config":{"x":null}}`), "config")
	if err != nil {
		t.Fatal(err)
	}
	if err := SetLabels(cfg, map[string]string{"new": "<3"}, "drop"); err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"config":{"Env":["A=b"],"Labels":{"keep":"1","new":"<3"}},"container_config":{"x":null},"zz":{"a":1}}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}

func TestEditCreatesMissing(t *testing.T) {
	o := Object{}
	if err := SetLabels(o, map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	out, _ := Marshal(o)
	if string(out) != `{"config":{"Labels":{"a":"b"}}}` {
		t.Fatalf("got %s", out)
	}
	if _, err := Decode([]byte(`null`), "thing"); err == nil {
		t.Fatal("null must not decode as an object")
	}
}
