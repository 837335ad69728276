package registryproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
)

// pushReference converts img to the reference 2DFS format and pushes it
// (config, field blob, manifest; the layers are pushed with img) as
// repo:tag.
func pushReference(t *testing.T, base, repo, tag string, img *partitiontest.Image) *tdfs.Image {
	t.Helper()
	ref, err := tdfs.FromImage(img.Manifest, img.MediaType, img.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{ref.Config, ref.FieldBlob} {
		r := do(t, http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", base, repo, digest.FromBytes(b)), b)
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("blob upload: %s %s", r.Status, r.body)
		}
	}
	pushManifest(t, base, repo, tag, ocispec.MediaTypeImageManifest, ref.Manifest)
	return ref
}

// A reference-format image (allotments named by a field blob) gives the
// same partition layers as the image it was converted from.
func TestPartitionReferenceFormat(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "team/app", "v1", img)
	pushReference(t, e.registry.URL, "team/app", "v1-tdfs", img)

	layersOf := func(tag string) []string {
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/team/app/manifests/"+tag, nil, "Accept", ocispec.MediaTypeImageManifest)
		checkServed(t, r, ocispec.MediaTypeImageManifest)
		var m ocispec.Manifest
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range m.Layers {
			out = append(out, l.Digest.String())
		}
		return out
	}
	ours, ref := layersOf("v1--0.0.1.0--2.2.2.2"), layersOf("v1-tdfs--0.0.1.0--2.2.2.2")
	if strings.Join(ours, ",") != strings.Join(ref, ",") || len(ours) != 1+3 {
		t.Fatalf("partition layers:\nours      %v\nreference %v", ours, ref)
	}
}

// An allotment blob the field names but the registry lacks is the
// upstream's fault: 502, nothing stored.
func TestPartitionReferenceMissingBlob(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	// Push the base layer only: every allotment blob is missing.
	base := &partitiontest.Image{MediaType: img.MediaType, Manifest: img.Manifest, Config: img.Config, Layers: img.Layers[:1]}
	for _, b := range base.Blobs() {
		do(t, http.MethodPost, fmt.Sprintf("%s/v2/team/app/blobs/uploads/?digest=%s", e.registry.URL, digest.FromBytes(b)), b)
	}
	pushReference(t, e.registry.URL, "team/app", "v1-tdfs", img)
	r := do(t, http.MethodGet, e.proxy.URL+"/v2/team/app/manifests/v1-tdfs--0.0.0.0", nil, "Accept", ocispec.MediaTypeImageManifest)
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.ociError(), "is missing from team/app") {
		t.Fatalf("got %s: %s", r.Status, r.ociError())
	}
	if e.mem.Len() != 0 {
		t.Fatalf("a failed partition stored %d objects", e.mem.Len())
	}
}
