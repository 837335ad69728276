package tests

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/direct"
	"github.com/tdfs-kit/tdfs/direct/layer"
	"github.com/tdfs-kit/tdfs/llb"
)

// directContext is the odd-sources field (modes, owners, times the layers
// must not show; several sources per allotment; folders they share) with a
// hard link inside a source folder.
func directContext(t *testing.T) string {
	t.Helper()
	a, _, _ := reproContexts(t)
	if err := os.Link(filepath.Join(a, "tree/top.txt"), filepath.Join(a, "tree/sub2/hard")); err != nil {
		t.Fatal(err)
	}
	return a
}

// Every allotment layer the direct engine's single pass writes is BuildKit's
// layer for that allotment, byte for byte: same blob digest and diff_id, at
// zstd and at gzip.
func TestDirectLayersMatchBuildKit(t *testing.T) {
	dir := directContext(t)
	data, err := os.ReadFile(filepath.Join(dir, "2dfs.json"))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := descriptor.Parse("2dfs.json", data)
	if err != nil {
		t.Fatal(err)
	}
	planned, err := direct.Plan(desc, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, level string }{{"zstd", "1"}, {"gzip", "1"}, {"zstd", "3"}} {
		ref := env.registry + "/direct-layers/field:" + c.name + "-" + c.level
		// A buildkitd that exported these allotments at one compression
		// reuses those blobs at another (2dfs build does not force the
		// compression), so each setting gets a fresh one.
		addr := env.buildkit
		if c.name != "zstd" || c.level != "1" {
			addr = extraBuildkitd(t, "direct-"+c.name+c.level)
		}
		build(t, addr, dir, "-t", ref, "--push", "--compression", c.name, "--compression-level", c.level)
		img := pull(t, ref)
		if len(img.record.Allotments) != len(planned) {
			t.Fatalf("%s: record has %d allotments, plan %d", ref, len(img.record.Allotments), len(planned))
		}
		level, _ := strconv.Atoi(c.level)
		comp, err := layer.ParseCompression(c.name, level)
		if err != nil {
			t.Fatal(err)
		}
		for i, al := range img.record.Allotments {
			if planned[i].Cell != al.Cell() {
				t.Fatalf("allotment %d: plan has %s, record %s", i, planned[i].Cell, al.Cell())
			}
			tree, err := layer.Scan(dir, planned[i])
			if err != nil {
				t.Fatal(err)
			}
			got, err := layer.Write(t.Context(), io.Discard, tree, llb.DefaultEpoch, comp)
			if err != nil {
				t.Fatal(err)
			}
			want := img.manifest.Layers[al.Layer]
			if got.Digest.String() != want.Digest.String() || got.Size != want.Size {
				t.Errorf("%s allotment %s: direct blob %s (%d bytes), BuildKit %s (%d bytes)", ref, al.Cell(), got.Digest, got.Size, want.Digest, want.Size)
			}
			if wantDiff := img.config.RootFS.DiffIDs[al.Layer]; got.DiffID != wantDiff {
				t.Errorf("%s allotment %s: direct diff_id %s, BuildKit %s", ref, al.Cell(), got.DiffID, wantDiff)
			}
			if string(want.MediaType) != comp.MediaType() {
				t.Errorf("%s allotment %s: media type %s, direct writes %s", ref, al.Cell(), want.MediaType, comp.MediaType())
			}
		}
	}
}
