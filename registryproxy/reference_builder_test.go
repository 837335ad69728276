package registryproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// refBuilderDir holds OCI layouts the reference builder (tdfs,
// 2DFS/2dfs-builder) wrote itself; its README.md says how.
var refBuilderDir = filepath.Join("..", "exporter", "tdfs", "testdata", "reference-builder")

func readRefBlob(t *testing.T, layout string, d digest.Digest) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(refBuilderDir, layout, "blobs", d.Algorithm().String(), d.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readRefJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// The proxy serves a partition of the reference builder's image, pushed as
// its `tdfs image push` pushes it (allotment blobs uploaded, named only by
// the field blob), with the layers and diff_ids of the partition the
// builder itself exports for the same tag.
func TestPartitionReferenceBuilderImage(t *testing.T) {
	e := newEnv(t, nil)
	index, err := os.ReadFile(filepath.Join(refBuilderDir, "field", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	readRefJSON(t, index, &idx)
	entries, err := os.ReadDir(filepath.Join(refBuilderDir, "field", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, ent.Name())
		if d == idx.Manifests[0].Digest {
			continue
		}
		r := do(t, http.MethodPost, fmt.Sprintf("%s/v2/tdfs/field/blobs/uploads/?digest=%s", e.registry.URL, d), readRefBlob(t, "field", d))
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("blob upload: %s %s", r.Status, r.body)
		}
	}
	pushManifest(t, e.registry.URL, "tdfs/field", idx.Manifests[0].Digest.String(), ocispec.MediaTypeImageManifest, readRefBlob(t, "field", idx.Manifests[0].Digest))
	pushManifest(t, e.registry.URL, "tdfs/field", "v1", ocispec.MediaTypeImageIndex, index)

	for _, sel := range []string{"0.0.1.1", "1.0.2.0"} {
		t.Run(sel, func(t *testing.T) {
			r := do(t, http.MethodGet, e.proxy.URL+"/v2/tdfs/field/manifests/v1--"+sel, nil, "Accept", ocispec.MediaTypeImageIndex)
			checkServed(t, r, ocispec.MediaTypeImageIndex)
			var served ocispec.Index
			readRefJSON(t, r.body, &served)
			if len(served.Manifests) != 1 {
				t.Fatalf("served index has %d manifests, want 1: %s", len(served.Manifests), r.body)
			}
			mr := do(t, http.MethodGet, e.proxy.URL+"/v2/tdfs/field/manifests/"+served.Manifests[0].Digest.String(), nil, "Accept", ocispec.MediaTypeImageManifest)
			checkServed(t, mr, ocispec.MediaTypeImageManifest)
			var got ocispec.Manifest
			readRefJSON(t, mr.body, &got)
			cr := do(t, http.MethodGet, e.proxy.URL+"/v2/tdfs/field/blobs/"+got.Config.Digest.String(), nil)
			checkServed(t, cr, "application/octet-stream")
			var gotCfg ocispec.Image
			readRefJSON(t, cr.body, &gotCfg)

			// The builder's own partition; its config is read by digest
			// (its manifest states the base config's size).
			layout := "partition-" + sel
			var refIdx ocispec.Index
			refIndex, err := os.ReadFile(filepath.Join(refBuilderDir, layout, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			readRefJSON(t, refIndex, &refIdx)
			var want ocispec.Manifest
			readRefJSON(t, readRefBlob(t, layout, refIdx.Manifests[0].Digest), &want)
			var wantCfg ocispec.Image
			readRefJSON(t, readRefBlob(t, layout, want.Config.Digest), &wantCfg)

			if len(want.Layers) < 2 || !slices.EqualFunc(got.Layers, want.Layers, func(a, b ocispec.Descriptor) bool {
				return a.MediaType == b.MediaType && a.Digest == b.Digest && a.Size == b.Size
			}) {
				t.Errorf("layers differ from the reference builder's partition:\n got %v\nwant %v", got.Layers, want.Layers)
			}
			if !slices.Equal(gotCfg.RootFS.DiffIDs, wantCfg.RootFS.DiffIDs) {
				t.Errorf("diff_ids differ from the reference builder's partition:\n got %v\nwant %v", gotCfg.RootFS.DiffIDs, wantCfg.RootFS.DiffIDs)
			}
		})
	}
}
