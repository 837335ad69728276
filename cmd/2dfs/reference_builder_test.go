package main_test

// These tests run the 2dfs binary on images the reference builder (tdfs,
// 2DFS/2dfs-builder) made: exporter/tdfs/testdata/reference-builder, whose
// README.md says how. They go through the CLI only, so they hold whatever
// package the commands are implemented in.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var refTestdata = filepath.Join("..", "..", "exporter", "tdfs", "testdata", "reference-builder")

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// cli builds the 2dfs binary from this directory once per test run.
func cli(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "2dfs-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "2dfs")
		out, err := exec.Command("go", "build", "-o", cliPath, ".").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cliPath != "" {
		os.RemoveAll(filepath.Dir(cliPath))
	}
	os.Exit(code)
}

// run2dfs runs the binary and returns its stdout; it fails the test when
// the command fails.
func run2dfs(t *testing.T, args ...string) string {
	t.Helper()
	stdout, _ := run2dfsLog(t, args...)
	return stdout
}

// run2dfsLog is run2dfs, also returning stderr, where commands log.
func run2dfsLog(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(cli(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("2dfs %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// refCell is one allotment of the reference builder's field, as its
// README.md describes it.
type refCell struct{ row, col, size int }

var refField = []refCell{{0, 0, 126}, {0, 1, 603}, {1, 0, 127}, {1, 1, 496}, {2, 0, 2124}}

// fieldDigests reads the reference builder's field blob directly (not
// through our code): cell -> [digest, diffid], both with sha256: prefixed.
func fieldDigests(t *testing.T) map[[2]int][2]digest.Digest {
	t.Helper()
	dir := filepath.Join(refTestdata, "field")
	var idx ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	var m ocispec.Manifest
	readJSON(t, blobPath(dir, idx.Manifests[0].Digest), &m)
	var f struct {
		Rows []struct {
			Allotments []struct {
				Row, Col       int
				Digest, DiffID string
			}
		}
	}
	readJSON(t, blobPath(dir, m.Layers[len(m.Layers)-1].Digest), &f)
	out := map[[2]int][2]digest.Digest{}
	for _, r := range f.Rows {
		for _, a := range r.Allotments {
			out[[2]int{a.Row, a.Col}] = [2]digest.Digest{digest.Digest("sha256:" + a.Digest), digest.Digest("sha256:" + a.DiffID)}
		}
	}
	if len(out) != len(refField) {
		t.Fatalf("field blob has %d cells, want %d", len(out), len(refField))
	}
	return out
}

type inspectOut struct {
	MediaType string `json:"mediaType"`
	Images    []struct {
		Platform   string `json:"platform"`
		Format     string `json:"format"`
		BaseSize   int64  `json:"baseSize"`
		BaseLayers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"baseLayers"`
		Rows       int `json:"rows"`
		Cols       int `json:"cols"`
		Allotments []struct {
			Row     int           `json:"row"`
			Col     int           `json:"col"`
			Digest  digest.Digest `json:"digest"`
			DiffID  digest.Digest `json:"diffID"`
			Size    int64         `json:"size"`
			Missing bool          `json:"missing"`
			Paths   []string      `json:"paths"`
		} `json:"allotments"`
	} `json:"images"`
}

func checkInspect(t *testing.T, out string) {
	t.Helper()
	var r inspectOut
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if len(r.Images) != 1 {
		t.Fatalf("inspect shows %d images, want 1:\n%s", len(r.Images), out)
	}
	img := r.Images[0]
	if img.Platform != "linux/amd64" || img.Format != "reference" || img.BaseSize != 185 || len(img.BaseLayers) != 1 {
		t.Errorf("image %s, format %s, base %d bytes in %d layers; want linux/amd64, reference, 185 in 1", img.Platform, img.Format, img.BaseSize, len(img.BaseLayers))
	}
	if img.Rows != 3 || img.Cols != 2 {
		t.Errorf("extent %d×%d, want 3×2", img.Rows, img.Cols)
	}
	want := fieldDigests(t)
	if len(img.Allotments) != len(refField) {
		t.Fatalf("%d allotments, want %d", len(img.Allotments), len(refField))
	}
	for i, c := range refField {
		a := img.Allotments[i]
		d := want[[2]int{c.row, c.col}]
		if a.Row != c.row || a.Col != c.col || a.Size != int64(c.size) || a.Missing || a.Digest != d[0] || a.DiffID != d[1] || len(a.Paths) != 0 {
			t.Errorf("allotment %d: %+v, want cell %d,%d of %d bytes, %s, diffID %s, no paths", i, a, c.row, c.col, c.size, d[0], d[1])
		}
	}
}

func TestInspectReferenceBuilderLayout(t *testing.T) {
	ref := "oci-layout://" + filepath.Join(refTestdata, "field")
	checkInspect(t, run2dfs(t, "inspect", "--json", ref))

	// The drawing: the ragged row 2 leaves cell 2,1 empty, sizes only.
	out := run2dfs(t, "inspect", ref)
	for _, want := range []string{
		"format reference",
		"base: 1 layer, 185 B; field: 5 allotments in 3×2",
		"0 | 126 B   | 603 B |",
		"1 | 127 B   | 496 B |",
		"2 | 2.1 KiB | .     |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}

// TestPartitionReferenceBuilderLayout partitions the builder's own export,
// an untagged layout (oci-layout://PATH--SEL), and compares with the
// partitions the builder exported for the same selections.
func TestPartitionReferenceBuilderLayout(t *testing.T) {
	src := "oci-layout://" + filepath.Join(refTestdata, "field")
	for _, sel := range []string{"0.0.1.1", "1.0.2.0"} {
		t.Run(sel, func(t *testing.T) {
			out := t.TempDir()
			_, log := run2dfsLog(t, "partition", src+"--"+sel, "--oci-layout", out)
			checkPartition(t, out, sel)
			// The builder's images carry no paths, so there is no record
			// to count allotments by: the log counts layers, base included.
			layers := map[string]string{"0.0.1.1": "5 layers", "1.0.2.0": "3 layers"}[sel]
			if !strings.Contains(log, ": "+layers+", no field record, manifest sha256:") {
				t.Errorf("partition log %q does not say it holds %s", log, layers)
			}
		})
	}
}

// TestPartitionReferenceBuilderRegistry pushes the builder's image to a
// registry as its `tdfs image push` would (allotment blobs uploaded but
// referenced from the field blob only) and inspects and partitions it there.
func TestPartitionReferenceBuilderRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/tdfs/field"
	pushLayout(t, filepath.Join(refTestdata, "field"), repo+":v1")

	checkInspect(t, run2dfs(t, "inspect", "--insecure", "--json", repo+":v1"))
	out := t.TempDir()
	run2dfs(t, "partition", "--insecure", repo+":v1--1.0.2.0", "--oci-layout", out)
	checkPartition(t, out, "1.0.2.0")
}

// checkPartition checks the partition in layout dir against the reference
// builder's partition for sel: the same layers and diff_ids, i.e. the base
// layer and exactly the selected allotments; and every blob in place.
func checkPartition(t *testing.T, dir, sel string) {
	t.Helper()
	got, gotCfg := readImage(t, dir)
	want, wantCfg := readImage(t, filepath.Join(refTestdata, "partition-"+sel))

	cells := map[string][][2]int{"0.0.1.1": {{0, 0}, {0, 1}, {1, 0}, {1, 1}}, "1.0.2.0": {{1, 0}, {2, 0}}}[sel]
	digests := fieldDigests(t)
	var wantLayers, wantIDs []digest.Digest
	for _, c := range cells {
		wantLayers = append(wantLayers, digests[c][0])
		wantIDs = append(wantIDs, digests[c][1])
	}
	var layers []digest.Digest
	for _, l := range got.Layers[1:] {
		layers = append(layers, l.Digest)
	}
	if !slices.Equal(layers, wantLayers) || !slices.Equal(gotCfg.RootFS.DiffIDs[1:], wantIDs) {
		t.Errorf("allotment layers %v, diff_ids %v; want cells %v: %v, %v", layers, gotCfg.RootFS.DiffIDs[1:], cells, wantLayers, wantIDs)
	}
	if !slices.EqualFunc(got.Layers, want.Layers, func(a, b ocispec.Descriptor) bool {
		return a.MediaType == b.MediaType && a.Digest == b.Digest && a.Size == b.Size
	}) {
		t.Errorf("layers differ from the reference builder's partition:\n got %v\nwant %v", got.Layers, want.Layers)
	}
	if !slices.Equal(gotCfg.RootFS.DiffIDs, wantCfg.RootFS.DiffIDs) {
		t.Errorf("diff_ids differ from the reference builder's partition:\n got %v\nwant %v", gotCfg.RootFS.DiffIDs, wantCfg.RootFS.DiffIDs)
	}
	if len(gotCfg.History) != len(got.Layers) {
		t.Errorf("%d history entries for %d layers", len(gotCfg.History), len(got.Layers))
	}
	for _, l := range got.Layers {
		b, err := os.ReadFile(blobPath(dir, l.Digest))
		if err != nil || digest.FromBytes(b) != l.Digest || int64(len(b)) != l.Size {
			t.Errorf("layer blob %s is not in the partition's layout as described (%v)", l.Digest, err)
		}
	}
}

// readImage reads the one image of a layout written by either tool (an
// index of one image, or the image). The reference builder's manifest may
// misstate its config's size, so the config is read by digest only.
func readImage(t *testing.T, dir string) (ocispec.Manifest, ocispec.Image) {
	t.Helper()
	var idx ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) != 1 {
		t.Fatalf("%s: %d images in index.json, want 1", dir, len(idx.Manifests))
	}
	d := idx.Manifests[0]
	if d.MediaType == ocispec.MediaTypeImageIndex {
		// A partition of an index is an index of partitions: descend.
		var child ocispec.Index
		readJSON(t, blobPath(dir, d.Digest), &child)
		if len(child.Manifests) != 1 {
			t.Fatalf("%s: %d images in the index, want 1", dir, len(child.Manifests))
		}
		d = child.Manifests[0]
	}
	var m ocispec.Manifest
	readJSON(t, blobPath(dir, d.Digest), &m)
	if m.Config.Digest == "" {
		t.Fatalf("%s: %s is not an image manifest", dir, d.Digest)
	}
	var cfg ocispec.Image
	readJSON(t, blobPath(dir, m.Config.Digest), &cfg)
	if len(m.Layers) == 0 || len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("%s: %d layers, %d diff_ids", dir, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	return m, cfg
}

// pushLayout uploads every blob of a layout and then its index.json as ref:
// the reference builder's layouts have the image index as index.json.
func pushLayout(t *testing.T, dir, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	manifests := map[digest.Digest]bool{}
	for _, d := range idx.Manifests {
		manifests[d.Digest] = true
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if manifests[d] {
			continue
		}
		b, err := os.ReadFile(blobPath(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(r.Context(), static.NewLayer(b, types.OCILayer)); err != nil {
			t.Fatal(err)
		}
	}
	for d := range manifests {
		b, err := os.ReadFile(blobPath(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(r.Context().Digest(d.String()), rawJSON{b, types.OCIManifestSchema1}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawJSON{b, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}
}

// rawJSON puts a manifest or index as the exact bytes given.
type rawJSON struct {
	data      []byte
	mediaType types.MediaType
}

func (r rawJSON) RawManifest() ([]byte, error)        { return r.data, nil }
func (r rawJSON) MediaType() (types.MediaType, error) { return r.mediaType, nil }

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPartitionUntaggedLayoutErrors: a bad oci-layout://PATH--SEL is refused
// with a message naming what is wrong, and nothing is written.
func TestPartitionUntaggedLayoutErrors(t *testing.T) {
	src := "oci-layout://" + filepath.Join(refTestdata, "field")
	for _, c := range []struct{ ref, want string }{
		{src, "has no partition selection"},
		{"oci-layout://--0.0.1.1", "has no layout directory before the selection"},
		{src + "--1.0.0.0", `partition tag "--1.0.0.0": rows are inverted`},
		{src + "--0.0.1", `partition tag "--0.0.1": a rectangle is four coordinates`},
	} {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(cli(t), "partition", c.ref, "--oci-layout", out)
		msg, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(msg), c.want) {
			t.Errorf("partition %s: %v, %q; want an error saying %q", c.ref, err, msg, c.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("partition %s wrote %s", c.ref, out)
		}
	}
}
