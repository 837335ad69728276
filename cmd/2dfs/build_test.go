package main

import (
	"reflect"
	"testing"

	"github.com/moby/buildkit/client"
)

func TestWithCompression(t *testing.T) {
	exports := []client.ExportEntry{
		{Type: client.ExporterImage, Attrs: map[string]string{"name": "r/a", "push": "true"}},
		{Type: client.ExporterOCI, Attrs: map[string]string{"compression": "gzip"}},
		{Type: client.ExporterLocal, Attrs: map[string]string{}},
		{Type: client.ExporterImage, Attrs: map[string]string{"oci-mediatypes": "false"}},
		{Type: client.ExporterDocker, Attrs: map[string]string{}},
	}
	got, err := withCompression(exports, "zstd", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"name": "r/a", "push": "true", "compression": "zstd", "compression-level": "1"},
		{"compression": "gzip"},
		{},
		{"oci-mediatypes": "false", "compression": "gzip", "compression-level": "1"},
		{"compression": "gzip", "compression-level": "1"},
	}
	for i := range want {
		if !reflect.DeepEqual(got[i].Attrs, want[i]) {
			t.Errorf("export %d attrs = %v, want %v", i, got[i].Attrs, want[i])
		}
	}
	if _, err := withCompression(nil, "lz4", 1); err == nil {
		t.Fatal("want an error for an unknown compression")
	}
}

func TestExportEntries(t *testing.T) {
	got, err := exportEntries(buildFlags{tags: []string{"r/a:1", "r/a:2"}, push: true})
	if err != nil || len(got) != 1 || got[0].Attrs["name"] != "r/a:1,r/a:2" || got[0].Attrs["push"] != "true" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := exportEntries(buildFlags{push: true}); err == nil {
		t.Fatal("--push without a tag must fail")
	}
	if _, err := exportEntries(buildFlags{tags: []string{"r/a"}, outputs: []string{"type=image,name=r/b"}}); err == nil {
		t.Fatal("--tag with an image output must fail")
	}
}

func TestFrontendAttrs(t *testing.T) {
	dir := t.TempDir()
	attrs, locals, err := frontendAttrs(buildFlags{
		platforms: []string{"linux/amd64", "linux/arm64"},
		buildArgs: []string{"SOURCE_DATE_EPOCH=5"},
		labels:    []string{"a=b"},
		contexts:  []string{"base=docker-image://r/base:v1", "data=" + dir},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"platform":                    "linux/amd64,linux/arm64",
		"build-arg:SOURCE_DATE_EPOCH": "5",
		"label:a":                     "b",
		"context:base":                "docker-image://r/base:v1",
		"context:data":                "local:context-data",
	}
	if !reflect.DeepEqual(attrs, want) || locals["context-data"] != dir {
		t.Fatalf("attrs %v locals %v", attrs, locals)
	}

	for flag, want := range map[string]*string{"": nil, "false": nil, "true": new(""), "1.2,0.0": new("1.2,0.0")} {
		attrs, _, err := frontendAttrs(buildFlags{noCache: flag})
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := attrs["no-cache"]; ok != (want != nil) || (ok && v != *want) {
			t.Errorf("--no-cache=%q: attrs %v", flag, attrs)
		}
	}
}

func TestSharedKey(t *testing.T) {
	a, b := sharedKey("/data/models/a"), sharedKey("/data/models/b")
	if a == b || a != sharedKey("/data/models/a/") || a[:2] != "a:" {
		t.Fatalf("shared keys %q %q", a, b)
	}
}
