package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auto picks direct only where the direct engine makes BuildKit's image,
// and says why not otherwise; --engine direct refuses those cases.
func TestChooseEngine(t *testing.T) {
	dir := t.TempDir()
	ignored := t.TempDir()
	if err := os.WriteFile(filepath.Join(ignored, ".dockerignore"), []byte("*.tmp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fromImage, fromURL := t.TempDir(), t.TempDir()
	for d, desc := range map[string]string{
		fromImage: `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0, "from": "r.example/weights:v1"}]}`,
		fromURL:   `{"allotments": [{"src": "https://files.example.com/a", "checksum": "sha256:` + strings.Repeat("a", 64) + `", "dst": "/a", "row": 0, "col": 0}]}`,
	} {
		if err := os.WriteFile(filepath.Join(d, "2dfs.json"), []byte(desc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	push := buildFlags{tags: []string{"r.example/a/b:v1"}, push: true, compression: "zstd", level: 1}
	with := func(mod func(*buildFlags)) buildFlags {
		f := push
		mod(&f)
		return f
	}
	for _, c := range []struct {
		name string
		f    buildFlags
		dir  string
		want string // engine, then the reason's start
	}{
		{"push", push, dir, "direct"},
		{"oci layout", with(func(f *buildFlags) { f.push = false; f.outputs = []string{"type=oci,dest=out.tar"} }), dir, "direct"},
		{"base override", with(func(f *buildFlags) { f.contexts = []string{"base=docker-image://r.example/base:v1"} }), dir, "direct"},
		{"no output", with(func(f *buildFlags) { f.push = false; f.tags = nil }), dir, "buildkit only pushes"},
		{"image output", with(func(f *buildFlags) {
			f.push = false
			f.tags = nil
			f.outputs = []string{`type=image,"name=r.example/ab:v1,r.example/ab:latest",push=true`}
		}), dir, "direct"},
		{"image output not pushed", with(func(f *buildFlags) {
			f.push = false
			f.tags = nil
			f.outputs = []string{"type=image,name=r.example/ab:v1"}
		}), dir, "buildkit only pushes"},
		{"image output option", with(func(f *buildFlags) {
			f.push = false
			f.tags = nil
			f.outputs = []string{"type=image,name=r.example/ab:v1,push=true,annotation.a=b"}
		}), dir, "buildkit output option annotation.a is BuildKit's"},
		{"local output", with(func(f *buildFlags) { f.push = false; f.outputs = []string{"type=local,dest=out"} }), dir, "buildkit only pushes"},
		{"docker media types", with(func(f *buildFlags) { f.push = false; f.outputs = []string{"type=oci,dest=o.tar,oci-mediatypes=false"} }), dir, "direct"},
		{"docker media types pushed", with(func(f *buildFlags) {
			f.push = false
			f.tags = nil
			f.outputs = []string{"type=image,name=r.example/ab:v1,push=true,oci-mediatypes=false"}
		}), dir, "direct"},
		{"cache-to", with(func(f *buildFlags) { f.cacheTo = []string{"type=inline"} }), dir, "buildkit --cache-to"},
		{"cache-from", with(func(f *buildFlags) { f.cacheFrom = []string{"type=registry,ref=r.example/c"} }), dir, "buildkit --cache-to"},
		{"no-cache", with(func(f *buildFlags) { f.noCache = "true" }), dir, "buildkit --no-cache"},
		{"metadata", with(func(f *buildFlags) { f.metadataFile = "m.json" }), dir, "buildkit --metadata-file"},
		{"estargz", with(func(f *buildFlags) { f.compression = "estargz" }), dir, "buildkit --compression estargz"},
		{"local context", with(func(f *buildFlags) { f.contexts = []string{"base=" + dir} }), dir, "buildkit --build-context"},
		{"dockerignore", push, ignored, "buildkit .dockerignore"},
		{"from an image", push, fromImage, `buildkit allotment 0,0 reads from "r.example/weights:v1"`},
		{"URL source", push, fromURL, "buildkit allotment 0,0 has a URL source"},
		{"pinned", with(func(f *buildFlags) { f.engine = "buildkit" }), dir, "buildkit asked for"},
	} {
		engine, why, err := chooseEngine(c.f, c.dir)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := engine + " " + why; !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: engine %q, want %q", c.name, got, c.want)
		}
		if engine == engineBuildKit && c.f.engine == "" {
			c.f.engine = engineDirect
			if _, _, err := chooseEngine(c.f, c.dir); err == nil || !strings.Contains(err.Error(), "--engine direct cannot build this") {
				t.Errorf("%s: --engine direct: %v, want a refusal", c.name, err)
			}
		}
	}
	if _, _, err := chooseEngine(with(func(f *buildFlags) { f.engine = "fast" }), dir); err == nil || !strings.Contains(err.Error(), `--engine "fast"`) {
		t.Errorf("--engine fast: %v", err)
	}
}

// directOutput reads the names and media types BuildKit's exporters would:
// every name of a comma-separated name=, and oci-mediatypes=false for
// Docker's types.
func TestDirectOutput(t *testing.T) {
	for _, c := range []struct {
		f    buildFlags
		tags string
		oci  bool
		dest string
	}{
		{buildFlags{tags: []string{"r.example/ab:v1", "r.example/ab:v2"}, push: true}, "r.example/ab:v1 r.example/ab:v2", true, ""},
		{buildFlags{outputs: []string{`type=image,"name=r.example/ab:v1,r.example/ab:v2",push=true,oci-mediatypes=false`}}, "r.example/ab:v1 r.example/ab:v2", false, ""},
		{buildFlags{outputs: []string{"type=image,push=true,name=r.example/ab:v1,oci-mediatypes=true"}}, "r.example/ab:v1", true, ""},
		{buildFlags{tags: []string{"r.example/ab:v1"}, outputs: []string{"type=oci,dest=o.tar,oci-mediatypes=false"}}, "r.example/ab:v1", false, "o.tar"},
	} {
		out, oci, err := directOutput(c.f)
		if err != nil {
			t.Fatalf("%v: %v", c.f, err)
		}
		var tags []string
		for _, t := range out.Tags {
			tags = append(tags, t.String())
		}
		if strings.Join(tags, " ") != c.tags || oci != c.oci || out.Layout != c.dest {
			t.Errorf("%v: tags %v, oci %v, layout %q; want %s, %v, %q", c.f, tags, oci, out.Layout, c.tags, c.oci, c.dest)
		}
	}
	// As buildctl: names are one quoted CSV field, not bare fields.
	if _, _, err := directOutput(buildFlags{outputs: []string{"type=image,name=r.example/ab:v1,r.example/ab:v2,push=true"}}); err == nil || !strings.Contains(err.Error(), "invalid value r.example/ab:v2") {
		t.Errorf("unquoted name list: %v", err)
	}
}
