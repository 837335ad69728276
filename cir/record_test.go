package cir

import (
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
)

const cfgA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const cfgB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func sample(t *testing.T) *Record {
	t.Helper()
	d, err := descriptor.Parse("2dfs.json", []byte(`{"base": "debian:bookworm", "dependencies": {"apt": ["python3"], "pip": ["Requests==2.32.3"], "pipIndex": "http://idx/simple"},
		"config": {"entrypoint": ["python3", "/app/main.py"], "env": ["A=1"]}, "allotments": []}`))
	if err != nil {
		t.Fatal(err)
	}
	return NewRecord(d.Dependencies, d.Config, Base{Ref: "docker.io/library/debian@" + cfgA, Platforms: []BasePlatform{{"linux/arm64", cfgB}, {"linux/amd64", cfgA}}})
}

func TestRecordRoundTrip(t *testing.T) {
	r := sample(t)
	v, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"base":{"ref":"docker.io/library/debian@` + cfgA + `","platforms":[{"platform":"linux/amd64","config":"` + cfgA + `"},{"platform":"linux/arm64","config":"` + cfgB + `"}]},` +
		`"dependencies":{"apt":["python3"],"pip":["requests==2.32.3"]},"resolver":{"pipIndex":"http://idx/simple"},"config":{"entrypoint":["python3","/app/main.py"],"env":["A=1"]}}`
	if v != want {
		t.Fatalf("encoded\n%s\nwant\n%s", v, want)
	}
	back, err := FromConfig(&ocispec.Image{Config: ocispec.ImageConfig{Labels: map[string]string{LabelKey: v}}})
	if err != nil || !reflect.DeepEqual(back, r) {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	c := back.Config.Descriptor()
	if !c.Entrypoint.Set || c.Cmd.Set || c.Env[0] != "A=1" {
		t.Fatalf("config %+v", c)
	}
	if p, ok := back.Platform("linux/arm64"); !ok || p.Config != cfgB {
		t.Fatalf("platform %+v %v", p, ok)
	}
	if none, err := FromConfig(&ocispec.Image{}); none != nil || err != nil {
		t.Fatalf("no label: %v %v", none, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"version": 2, "whatever": true}`, "CIR record: version 2 is not known to this 2dfs, which reads version 1; upgrade 2dfs"},
		{`{"base": {}}`, "CIR record: label org.2dfs.cir has no version"},
		{`{"version": 1, "base": {"ref": "x", "platforms": [{"platform": "linux/amd64", "config": "` + cfgA + `"}]}, "dependencies": {"pip": ["a"]}, "resolver": {}, "config": {}, "extra": 1}`,
			`CIR record: label org.2dfs.cir is not valid: json: unknown field "extra"`},
		{`{"version": 1, "base": {"ref": "x", "platforms": [{"platform": "linux/amd64", "config": "` + cfgA + `"}]}, "dependencies": {"pip": ["a"]}, "resolver": {}, "config": {}}`,
			"CIR record: pip dependencies without resolver.pipIndex"},
		{`{"version": 1, "base": {"ref": "x", "platforms": []}, "dependencies": {"apt": ["a"]}, "resolver": {}, "config": {}}`,
			"CIR record: base.platforms is empty; the pre-build pins the base for at least one platform"},
		{`not json`, "CIR record: label org.2dfs.cir is not valid JSON"},
	} {
		_, err := Decode(tc.in)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Decode(%s) = %v, want %s", tc.in, err, tc.want)
		}
	}
}
