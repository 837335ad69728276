package frontend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/field"
)

// The assembled image names its CIR by manifest digest alone, so a CIR read
// from a registry, a mirror or an OCI layout gives one image.
func TestRecordedCIR(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"registry.example/app@" + d:        d,
		"mirror.example:5000/a/b/app@" + d: d,
		d:                                  d,
		"":                                 "",
	} {
		if got := (DeployRequest{CIR: in}).recordedCIR(); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// A "cir" context of a scheme no CIR comes from is refused with the forms
// that work.
func TestCIRSourceScheme(t *testing.T) {
	for _, v := range []string{"local:cir", "https://example.com/app.git", "registry.example/app:cir"} {
		_, _, err := cirSource(context.Background(), nil, nil, v)
		if err == nil || !strings.Contains(err.Error(), "it must name a CIR: cir=docker-image://REF, cir=oci-layout://PATH@sha256:DIGEST, or in bake a target") {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// A CIR handed over by bake (input:) has the config of a build result, not
// of an exported image: no rootfs yet. Its field record is read and checked
// against the history.
func TestUnexportedFieldRecord(t *testing.T) {
	rec := field.NewRecord(0, []field.RecordedAllotment{{Row: 0, Col: 0, Dst: []string{"/app"}}})
	label, _, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	config := func(history []ocispec.History) []byte {
		img := ocispec.Image{Config: ocispec.ImageConfig{Labels: map[string]string{field.LabelKey: label}}, History: history}
		dt, err := json.Marshal(img)
		if err != nil {
			t.Fatal(err)
		}
		if dt, err = rec.Embed(dt); err != nil {
			t.Fatal(err)
		}
		return dt
	}
	good := config([]ocispec.History{{Comment: field.HistoryComment(field.Cell{Row: 0, Col: 0})}, {EmptyLayer: true, Comment: "env"}})
	if _, err := field.FromConfig(good); err == nil {
		t.Fatal("field.FromConfig took a config without layers: this test no longer shows why unexportedFieldRecord exists")
	}
	got, err := unexportedFieldRecord(good)
	if err != nil || got == nil || len(got.Allotments) != 1 || got.Allotments[0].Dst[0] != "/app" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := unexportedFieldRecord(config([]ocispec.History{{Comment: "something else"}})); err == nil || !strings.Contains(err.Error(), "field record is stale: layer 0 should hold allotment") {
		t.Errorf("a history that does not match: %v", err)
	}
	if r, err := unexportedFieldRecord([]byte(`{"config":{}}`)); r != nil || err != nil {
		t.Errorf("no record: %v %v", r, err)
	}
}
