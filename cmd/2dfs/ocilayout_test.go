package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOCILayoutStores(t *testing.T) {
	layout := filepath.Join(t.TempDir(), "lay:out")
	if err := os.MkdirAll(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layout, "index.json"), []byte(`{"schemaVersion":2,"manifests":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{
		"context:cir":  "oci-layout://" + layout + ":v1@sha256:0123",
		"context:base": "docker-image://r/base:v1",
	}
	stores, err := ociLayoutStores(attrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(stores) != 1 || attrs["context:base"] != "docker-image://r/base:v1" {
		t.Fatalf("stores %v, attrs %v", stores, attrs)
	}
	for id := range stores {
		if want := "oci-layout://" + id + ":v1@sha256:0123"; attrs["context:cir"] != want {
			t.Errorf("context:cir = %q, want %q", attrs["context:cir"], want)
		}
	}
	// The same path gives the same store name.
	again := map[string]string{"context:cir": "oci-layout://" + layout + ":v1@sha256:0123"}
	if _, err := ociLayoutStores(again); err != nil || again["context:cir"] != attrs["context:cir"] {
		t.Errorf("second call: %v %q", err, again["context:cir"])
	}

	missing := filepath.Join(t.TempDir(), "nolayout")
	_, err = ociLayoutStores(map[string]string{"context:cir": "oci-layout://" + missing + "@sha256:0123"})
	if err == nil || !strings.Contains(err.Error(), missing+" is not an OCI layout (no index.json)") {
		t.Errorf("a folder without index.json: %v", err)
	}
}
