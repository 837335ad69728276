package field

import (
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
	v, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"baseLayers":2,"allotments":[{"row":0,"col":0,"layer":2,"dst":["/m/a","/m/a2"]},{"row":0,"col":1,"layer":3,"dst":["/m/b"]},{"row":1,"col":0,"layer":4,"dst":["/m/c"]}]}`
	if v != want {
		t.Fatalf("encoded:\n%s\nwant:\n%s", v, want)
	}
	back, err := Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Encode()
	if again != v {
		t.Fatalf("round trip changed the record: %s", again)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"version":2,"baseLayers":0,"allotments":[]}`, "unsupported version 2"},
		{`{"version":1,"baseLayers":-1,"allotments":[]}`, "baseLayers is -1"},
		{`{"version":1,"baseLayers":0,"allotments":[],"extra":1}`, `unknown field "extra"`},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":0,"layer":0,"dst":["/a"]},{"row":0,"col":0,"layer":1,"dst":["/b"]}]}`, "cell recorded twice"},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":1,"col":0,"layer":0,"dst":["/a"]},{"row":0,"col":0,"layer":1,"dst":["/b"]}]}`, "not in row-major order"},
		{`{"version":1,"baseLayers":1,"allotments":[{"row":0,"col":0,"layer":0,"dst":["/a"]}]}`, "layer is 0, want 1"},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":2000,"layer":0,"dst":["/a"]}]}`, "within 0..1023"},
		{`{"version":1,"baseLayers":0,"allotments":[{"row":0,"col":0,"layer":0,"dst":[]}]}`, "dst is empty"},
		{`{"version":1`, "not valid"},
		{`{"version":1,"baseLayers":0,"allotments":[]} {}`, "trailing data"},
	} {
		if _, err := Decode(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func config(r *Record, extraLayer bool) *ocispec.Image {
	v, _ := r.Encode()
	img := &ocispec.Image{}
	img.Config.Labels = map[string]string{LabelKey: v}
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

func TestFromConfig(t *testing.T) {
	r, err := FromConfig(config(sample(), false))
	if err != nil || r == nil || len(r.Allotments) != 3 {
		t.Fatalf("FromConfig = %+v, %v", r, err)
	}
	if r, err := FromConfig(&ocispec.Image{}); r != nil || err != nil {
		t.Fatalf("image without record: %+v, %v", r, err)
	}
}

// An image built FROM a field image inherits the label but not the layout:
// the record must be detected as stale.
func TestFromConfigStale(t *testing.T) {
	_, err := FromConfig(config(sample(), true))
	if err == nil || !strings.Contains(err.Error(), "field record is stale: it describes 5 layers (2 base + 3 allotments) but the image has 6") {
		t.Fatalf("got %v", err)
	}
	img := config(sample(), false)
	img.History[3].Comment = "2dfs allotment 9,9"
	if _, err := FromConfig(img); err == nil || !strings.Contains(err.Error(), `layer 2 should hold allotment 0,0 but its history says "2dfs allotment 9,9"`) {
		t.Fatalf("got %v", err)
	}
}
