package field

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sample() *Record {
	return NewRecord(2, []RecordedAllotment{
		{Row: 1, Col: 0, Dst: []string{"/m/c"}},
		{Row: 0, Col: 1, Dst: []string{"/m/b"}},
		{Row: 0, Col: 0, Dst: []string{"/m/a", "/m/a2"}},
	})
}

func TestRecordRoundTrip(t *testing.T) {
	r := sample()
	label, allotments, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":2,"baseLayers":2,"allotments":3}`; label != want {
		t.Fatalf("label:\n%s\nwant:\n%s", label, want)
	}
	if want := `[{"row":0,"col":0,"dst":["/m/a","/m/a2"]},{"row":0,"col":1,"dst":["/m/b"]},{"row":1,"col":0,"dst":["/m/c"]}]`; string(allotments) != want {
		t.Fatalf("allotments:\n%s\nwant:\n%s", allotments, want)
	}
	back, err := Decode(label, allotments)
	if err != nil {
		t.Fatal(err)
	}
	if back.Version != 2 || !reflect.DeepEqual(back.Allotments, r.Allotments) {
		t.Fatalf("round trip changed the record: %+v", back)
	}
	label2, allotments2, _ := back.Encode()
	if label2 != label || string(allotments2) != string(allotments) {
		t.Fatalf("round trip changed the encoding: %s %s", label2, allotments2)
	}
}

// Images built before version 2 keep the whole record in the label; they
// must still read, and re-encode as version 2.
func TestDecodeVersion1(t *testing.T) {
	v1 := `{"version":1,"baseLayers":2,"allotments":[{"row":0,"col":0,"layer":2,"dst":["/m/a","/m/a2"]},{"row":0,"col":1,"layer":3,"dst":["/m/b"]},{"row":1,"col":0,"layer":4,"dst":["/m/c"]}]}`
	r, err := Decode(v1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 1 || r.BaseLayers != 2 || !reflect.DeepEqual(r.Allotments, sample().Allotments) {
		t.Fatalf("decoded %+v", r)
	}
	label, _, err := r.Encode()
	if err != nil || label != `{"version":2,"baseLayers":2,"allotments":3}` {
		t.Fatalf("re-encoded as %s, %v", label, err)
	}
	cfg := rawConfig(t, config(sample(), false), v1, nil)
	got, err := FromConfig(cfg)
	if err != nil || got.Version != 1 || len(got.Allotments) != 3 {
		t.Fatalf("FromConfig(v1 config) = %+v, %v", got, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ label, allotments, want string }{
		{`{"version":3,"baseLayers":0,"allotments":[]}`, "", "unsupported version 3"},
		{`{"version":1,"baseLayers":-1,"allotments":[]}`, "", "baseLayers is -1"},
		{`{"version":1,"baseLayers":0,"allotments":[],"extra":1}`, "", `unknown field "extra"`},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":0,"layer":0,"dst":["/a"]},{"row":0,"col":0,"layer":1,"dst":["/b"]}]}`, "", "cell recorded twice"},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":1,"col":0,"layer":0,"dst":["/a"]},{"row":0,"col":0,"layer":1,"dst":["/b"]}]}`, "", "not in row-major order"},
		{`{"version":1,"baseLayers":1,"allotments":[{"row":0,"col":0,"layer":0,"dst":["/a"]}]}`, "", "layer is 0, want 1"},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":2000,"layer":0,"dst":["/a"]}]}`, "", "within 0..1023"},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":0,"layer":0,"dst":[]}]}`, "", "dst is empty"},
		{`{"version":1`, "", "not valid"},
		{`{"version":1,"baseLayers":0,"allotments":[]} {}`, "", "trailing data"},
		{`{"version":1,"baseLayers":0,"allotments":[]}`, `[]`, "version 1, which keeps its allotments in the label, but the config also has org.2dfs.field.allotments"},
		{`{"version":2,"baseLayers":0,"allotments":1}`, "", "field record is stale: label org.2dfs.field says 1 allotments but the config has no org.2dfs.field.allotments key"},
		{`{"version":2,"baseLayers":0,"allotments":2}`, `[{"row":0,"col":0,"dst":["/a"]}]`, "says 2 allotments but org.2dfs.field.allotments has 1"},
		{`{"version":2,"baseLayers":0,"allotments":1,"x":1}`, `[{"row":0,"col":0,"dst":["/a"]}]`, `label org.2dfs.field is not valid: json: unknown field "x"`},
		{`{"version":2,"baseLayers":0,"allotments":1}`, `[{"row":0,"col":0,"layer":0,"dst":["/a"]}]`, `org.2dfs.field.allotments is not valid: json: unknown field "layer"`},
		{`{"version":2,"baseLayers":0,"allotments":1}`, `{"row":0}`, `org.2dfs.field.allotments is not valid`},
		{`{"version":2,"baseLayers":0,"allotments":0}`, `null`, `must be an array, not null`},
		{`{"version":2,"baseLayers":0,"allotments":2}`, `[{"row":0,"col":1,"dst":["/a"]},{"row":0,"col":0,"dst":["/b"]}]`, "allotment 1 (row 0, col 0): allotments are not in row-major order"},
		{`{"version":2,"baseLayers":0,"allotments":1}`, `[{"row":0,"col":0,"dst":[]}]`, "dst is empty"},
	} {
		var allotments []byte
		if tc.allotments != "" {
			allotments = []byte(tc.allotments)
		}
		if _, err := Decode(tc.label, allotments); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s, %s) = %v, want error containing %q", tc.label, tc.allotments, err, tc.want)
		}
	}
}

// config lays out an image config for r (history and diff_ids); rawConfig
// adds the record.
func config(r *Record, extraLayer bool) *ocispec.Image {
	img := &ocispec.Image{}
	img.Config.Labels = map[string]string{"maintainer": "me <&>"}
	img.History = []ocispec.History{{CreatedBy: "base 1"}, {CreatedBy: "ENV", EmptyLayer: true}, {CreatedBy: "base 2"}}
	for _, a := range r.Allotments {
		img.History = append(img.History, ocispec.History{Comment: HistoryComment(a.Cell())})
	}
	if extraLayer {
		img.History = append(img.History, ocispec.History{CreatedBy: "RUN rm -rf /m"})
	}
	n := len(img.History) - 1
	for i := 0; i < n; i++ {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.FromString(string(rune('a'+i))))
	}
	return img
}

// rawConfig marshals img with the given label and, when not nil, the
// ConfigKey value.
func rawConfig(t *testing.T, img *ocispec.Image, label string, allotments []byte) []byte {
	t.Helper()
	img.Config.Labels[LabelKey] = label
	dt, err := json.Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	if allotments == nil {
		return dt
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(dt, &m); err != nil {
		t.Fatal(err)
	}
	m[ConfigKey] = allotments
	dt, _ = json.Marshal(m)
	return dt
}

func embedded(t *testing.T, r *Record, extraLayer bool) []byte {
	t.Helper()
	dt, err := json.Marshal(config(r, extraLayer))
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Embed(dt)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFromConfig(t *testing.T) {
	cfg := embedded(t, sample(), false)
	r, err := FromConfig(cfg)
	if err != nil || r == nil || r.Version != 2 || !reflect.DeepEqual(r.Allotments, sample().Allotments) {
		t.Fatalf("FromConfig = %+v, %v", r, err)
	}
	if r, err := FromConfig([]byte(`{"config":{}}`)); r != nil || err != nil {
		t.Fatalf("image without record: %+v, %v", r, err)
	}
	// The label stays small and the other labels and fields are kept.
	var img ocispec.Image
	if err := json.Unmarshal(cfg, &img); err != nil {
		t.Fatal(err)
	}
	if got := img.Config.Labels[LabelKey]; got != `{"version":2,"baseLayers":2,"allotments":3}` {
		t.Errorf("label = %s", got)
	}
	if img.Config.Labels["maintainer"] != "me <&>" || len(img.History) != 6 {
		t.Errorf("Embed lost config fields: %s", cfg)
	}
	// Embedding again (a partition of a partition) gives the same bytes.
	again, err := r.Embed(cfg)
	if err != nil || string(again) != string(cfg) {
		t.Errorf("second Embed changed the config:\n%s\n%s (%v)", cfg, again, err)
	}
}

// A 16 x 16 field with realistic paths overflowed containerd's 4,096-byte
// label limit in version 1; the version 2 label does not grow.
func TestLabelStaysSmall(t *testing.T) {
	var placed []RecordedAllotment
	for r := range 16 {
		for c := range 16 {
			placed = append(placed, RecordedAllotment{Row: r, Col: c, Dst: []string{fmt.Sprintf("/model/splits/layer%02d-shard%02d.bin", r, c)}})
		}
	}
	label, allotments, err := NewRecord(3, placed).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(LabelKey)+len(label) > 128 {
		t.Errorf("label is %d bytes: %s", len(label), label)
	}
	if len(allotments) < 4096 {
		t.Errorf("the test field is too small to prove anything: %d bytes of allotments", len(allotments))
	}
}

// An image built FROM a field image inherits the label but not the layout:
// the record must be detected as stale.
func TestFromConfigStale(t *testing.T) {
	_, err := FromConfig(embedded(t, sample(), true))
	if err == nil || !strings.Contains(err.Error(), "field record is stale: it describes 5 layers (2 base + 3 allotments) but the image has 6") {
		t.Fatalf("got %v", err)
	}
	img := config(sample(), false)
	img.History[3].Comment = "2dfs allotment 9,9"
	dt, _ := json.Marshal(img)
	dt, _ = sample().Embed(dt)
	if _, err := FromConfig(dt); err == nil || !strings.Contains(err.Error(), `layer 2 should hold allotment 0,0 but its history says "2dfs allotment 9,9"`) {
		t.Fatalf("got %v", err)
	}
	// A builder that decodes the base config into typed structs keeps the
	// label and drops the top-level key.
	var typed ocispec.Image
	if err := json.Unmarshal(embedded(t, sample(), true), &typed); err != nil {
		t.Fatal(err)
	}
	dt, _ = json.Marshal(typed)
	if _, err := FromConfig(dt); err == nil || !strings.Contains(err.Error(), "field record is stale: label org.2dfs.field says 3 allotments but the config has no org.2dfs.field.allotments key") {
		t.Fatalf("got %v", err)
	}
}

// FuzzDecode: any record that decodes re-encodes as version 2 and decodes
// to the same allotments.
func FuzzDecode(f *testing.F) {
	label, allotments, _ := sample().Encode()
	f.Add(label, allotments)
	f.Add(`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":0,"layer":0,"dst":["/a"]}]}`, []byte(nil))
	f.Add(`{"version":2,"baseLayers":1,"allotments":0}`, []byte(`[]`))
	f.Fuzz(func(t *testing.T, label string, allotments []byte) {
		r, err := Decode(label, allotments)
		if err != nil {
			return
		}
		l2, a2, err := r.Encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		back, err := Decode(l2, a2)
		if err != nil || back.BaseLayers != r.BaseLayers || !reflect.DeepEqual(back.Allotments, r.Allotments) {
			t.Fatalf("round trip: %+v, %v; was %+v", back, err, r)
		}
	})
}
