package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/layout"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/internal/printable"
)

var grid = []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 1}, {Row: 2, Col: 0}}

func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t *testing.T, ref string, mediaType string, manifest []byte, blobs ...[]byte) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if err := remote.WriteLayer(r.Context(), static.NewLayer(b, types.OCILayer)); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Put(r, rawManifest{manifest, mediaType}); err != nil {
		t.Fatal(err)
	}
}

// pushOurs pushes a two-platform field image with an attestation to REPO:v1.
func pushOurs(t *testing.T, repo string) {
	amd := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid...)
	arm := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid[1:]...)
	index, images := partitiontest.Index(ocispec.MediaTypeImageIndex,
		partitiontest.Platform{Image: amd, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Attest: true},
		partitiontest.Platform{Image: arm, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	for _, img := range images {
		push(t, repo+"@"+img.Digest().String(), img.MediaType, img.Manifest, img.Blobs()...)
	}
	push(t, repo+":v1", ocispec.MediaTypeImageIndex, index)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func inspectJSON(t *testing.T, ref string) *image.Report {
	t.Helper()
	var out bytes.Buffer
	if err := runInspect(context.Background(), inspectFlags{registryFlags: registryFlags{insecure: true}, json: true}, ref, &out); err != nil {
		t.Fatal(err)
	}
	var r image.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// readLayout returns a layout's index.json and the layers of each image
// manifest it holds, by platform (or "" for a single manifest).
func readLayout(t *testing.T, dir string) (ocispec.Index, map[string][]digest.Digest) {
	t.Helper()
	blob := func(d digest.Digest) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(b) != d {
			t.Fatalf("blob %s does not match its name", d)
		}
		return b
	}
	var idx ocispec.Index
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	layers := map[string][]digest.Digest{}
	var visit func(d ocispec.Descriptor, platform string)
	visit = func(d ocispec.Descriptor, platform string) {
		b := blob(d.Digest)
		if d.MediaType == ocispec.MediaTypeImageIndex {
			var child ocispec.Index
			json.Unmarshal(b, &child)
			for _, c := range child.Manifests {
				if c.Annotations["vnd.docker.reference.type"] != "" {
					continue
				}
				visit(c, c.Platform.OS+"/"+c.Platform.Architecture)
			}
			return
		}
		var m ocispec.Manifest
		json.Unmarshal(b, &m)
		blob(m.Config.Digest)
		for _, l := range m.Layers {
			blob(l.Digest)
			layers[platform] = append(layers[platform], l.Digest)
		}
	}
	for _, d := range idx.Manifests {
		visit(d, "")
	}
	return idx, layers
}

func TestExportInspectPartition(t *testing.T) {
	ctx := context.Background()
	host := startRegistry(t)
	pushOurs(t, host+"/ours")
	insecure := registryFlags{insecure: true}

	var log bytes.Buffer
	if err := runExport(ctx, exportFlags{registryFlags: insecure, format: "tdfs"}, host+"/ours:v1", host+"/ref:v1", &log); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(mustRef(t, host+"/ref:v1"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(desc.Manifest, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex || idx.Annotations[tdfs.AnnotationImageName] != host+"/ref:v1" || len(idx.Manifests) != 2 {
		t.Fatalf("exported index: %s", desc.Manifest)
	}
	for _, d := range idx.Manifests {
		m, err := remote.Get(mustRef(t, host+"/ref@"+d.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		if !tdfs.IsReference(m.Manifest) {
			t.Errorf("%s is not reference-format: %s", d.Platform.Architecture, m.Manifest)
		}
	}

	// Both formats inspect to the same field.
	ours, ref := inspectJSON(t, host+"/ours:v1"), inspectJSON(t, host+"/ref:v1")
	if len(ours.Images) != 2 || len(ref.Images) != 2 {
		t.Fatalf("images: %d ours, %d reference", len(ours.Images), len(ref.Images))
	}
	for i := range ours.Images {
		o, r := ours.Images[i], ref.Images[i]
		if o.Format != image.FormatRecord || r.Format != image.FormatReference || o.Platform != r.Platform {
			t.Errorf("image %d: %s/%s %s/%s", i, o.Platform, o.Format, r.Platform, r.Format)
		}
		o.Format, r.Format, o.Manifest, r.Manifest = "", "", "", ""
		for j := range o.Allotments {
			o.Allotments[j].MediaType = ocispec.MediaTypeImageLayerGzip
		}
		ob, _ := json.Marshal(o)
		rb, _ := json.Marshal(r)
		if !bytes.Equal(ob, rb) {
			t.Errorf("platform %s:\nours      %s\nreference %s", o.Platform, ob, rb)
		}
	}

	// A partition of the reference image has the layers of the same
	// partition of ours.
	dirOurs, dirRef := t.TempDir(), t.TempDir()
	for _, c := range []struct{ ref, dir string }{{host + "/ours:v1--0.0.1.1", dirOurs}, {host + "/ref:v1--0.0.1.1", dirRef}} {
		if err := runPartition(ctx, partitionFlags{registryFlags: insecure, layout: c.dir}, c.ref, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	idxOurs, layersOurs := readLayout(t, dirOurs)
	idxRef, layersRef := readLayout(t, dirRef)
	if len(layersOurs) != 2 || len(layersOurs["linux/amd64"]) != 2+3 || len(layersOurs["linux/arm64"]) != 1+2 {
		t.Errorf("partition of ours: %v", layersOurs)
	}
	for p, l := range layersOurs {
		if !slices.Equal(l, layersRef[p]) {
			t.Errorf("%s: reference partition layers %v, want %v", p, layersRef[p], l)
		}
	}
	if got := idxRef.Manifests[0].Annotations; got[ocispec.AnnotationRefName] != "v1--0.0.1.1" || got[layout.AnnotationContainerdName] != host+"/ref:v1--0.0.1.1" {
		t.Errorf("index.json annotations %v", got)
	}
	_ = idxOurs

	// One platform, to a tar.
	tarPath := filepath.Join(t.TempDir(), "part.tar")
	if err := runPartition(ctx, partitionFlags{registryFlags: insecure, output: tarPath, platform: "linux/arm64"}, host+"/ref:v1--2.0.2.0", io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := untar(t, tarPath)
	_, layers := readLayout(t, dir)
	if len(layers) != 1 || len(layers[""]) != 2 {
		t.Errorf("arm64 partition 2.0.2.0: %v, want 1 base layer + (2,0)", layers)
	}

	// Export to a layout, then inspect and partition from it.
	layoutDir := t.TempDir()
	if err := runExport(ctx, exportFlags{registryFlags: insecure, format: "tdfs"}, host+"/ours:v1", "oci-layout://"+layoutDir+":v1", io.Discard); err != nil {
		t.Fatal(err)
	}
	fromLayout := inspectJSON(t, "oci-layout://"+layoutDir+":v1")
	if len(fromLayout.Images) != 2 || fromLayout.Images[0].Format != image.FormatReference {
		t.Errorf("inspect of the exported layout: %+v", fromLayout)
	}
	if err := runPartition(ctx, partitionFlags{layout: t.TempDir()}, "oci-layout://"+layoutDir+":v1--0.0.0.0", io.Discard); err != nil {
		t.Errorf("partition from a layout: %v", err)
	}

	// From a layout (a single manifest) to a registry, named by --name. A
	// fresh registry, so every blob is uploaded from the layout.
	host = startRegistry(t)
	if err := runExport(ctx, exportFlags{registryFlags: insecure, format: "tdfs", name: "example.com/m:v1"}, "oci-layout://"+writeOursLayout(t)+":v1", host+"/fromlayout:v1", io.Discard); err != nil {
		t.Fatal(err)
	}
	single := inspectJSON(t, host+"/fromlayout:v1")
	if single.MediaType != ocispec.MediaTypeImageIndex || len(single.Images) != 1 || single.Images[0].Platform != "linux/amd64" || len(single.Images[0].Allotments) != len(grid) {
		t.Errorf("single manifest exported from a layout: %+v", single)
	}
	desc, err = remote.Get(mustRef(t, host+"/fromlayout:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(desc.Manifest), `"2dfs.image.name":"example.com/m:v1"`) {
		t.Errorf("--name not used: %s", desc.Manifest)
	}
}

func untar(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		p := filepath.Join(dir, h.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		os.WriteFile(p, b, 0o644)
	}
	if names[0] != "oci-layout" || names[len(names)-1] != "index.json" {
		t.Errorf("tar entries %v: want oci-layout first and index.json last", names)
	}
	return dir
}

// referenceImage pushes an image as the reference builder makes it, with
// the given field blob; blobs lists the allotment blobs to push with it.
func pushReference(t *testing.T, ref string, fieldBlob []byte, allotments ...[]byte) {
	t.Helper()
	base := []byte("base layer")
	config := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + digest.FromString("base diff").String() + `"]},"history":[{"created_by":"ADD"}]}`)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers: []ocispec.Descriptor{
			{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(base), Size: int64(len(base))},
			{MediaType: tdfs.MediaTypeField, Digest: digest.FromBytes(fieldBlob), Size: int64(len(fieldBlob))},
		},
	}
	m.SchemaVersion = 2
	manifest, _ := json.Marshal(m)
	push(t, ref, ocispec.MediaTypeImageManifest, manifest, append([][]byte{base, config, fieldBlob}, allotments...)...)
}

func TestReferenceErrors(t *testing.T) {
	ctx := context.Background()
	host := startRegistry(t)
	insecure := registryFlags{insecure: true}
	present, absent := []byte("allotment present"), []byte("allotment absent")
	f, _ := tdfs.NewField([]tdfs.Entry{
		{Row: 0, Col: 0, Digest: digest.FromBytes(present), DiffID: digest.FromString("d0")},
		{Row: 1, Col: 2, Digest: digest.FromBytes(absent), DiffID: digest.FromString("d1")},
	})
	pushReference(t, host+"/missing:v1", f.Encode(), present)

	var out bytes.Buffer
	err := runInspect(ctx, inspectFlags{registryFlags: insecure}, host+"/missing:v1", &out)
	if err == nil || !strings.Contains(err.Error(), "allotment 1,2") || !strings.Contains(err.Error(), "is missing from") {
		t.Errorf("inspect with a missing blob: %v", err)
	}
	if !strings.Contains(out.String(), "MISSING "+digest.FromBytes(absent).Encoded()[:12]) {
		t.Errorf("the picture does not show the missing cell:\n%s", out.String())
	}
	err = runPartition(ctx, partitionFlags{registryFlags: insecure, layout: t.TempDir()}, host+"/missing:v1--0.0.9.9", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is missing from") {
		t.Errorf("partition with a missing blob: %v", err)
	}
	// The present cell alone partitions fine.
	if err := runPartition(ctx, partitionFlags{registryFlags: insecure, layout: t.TempDir()}, host+"/missing:v1--0.0.0.0", io.Discard); err != nil {
		t.Errorf("partition of the present cell: %v", err)
	}

	pushReference(t, host+"/bad:v1", []byte(`{"rows":[{"allotments":[{"row":0,"col":0,"digest":"sha256:abc","diffid":""}],"allotments_size":1}],"rows_size":1,"owner":""}`))
	for _, run := range []func() error{
		func() error {
			return runInspect(ctx, inspectFlags{registryFlags: insecure}, host+"/bad:v1", io.Discard)
		},
		func() error {
			return runPartition(ctx, partitionFlags{registryFlags: insecure, layout: t.TempDir()}, host+"/bad:v1--0.0.0.0", io.Discard)
		},
	} {
		if err := run(); err == nil || !strings.Contains(err.Error(), "malformed 2DFS field") || !strings.Contains(err.Error(), "sha256: prefix") {
			t.Errorf("malformed field: %v", err)
		}
	}

	// A layout whose field blob does not match its digest.
	dir := t.TempDir()
	if err := runExport(ctx, exportFlags{format: "tdfs"}, "oci-layout://"+writeOursLayout(t)+":v1", "oci-layout://"+dir+":v1", io.Discard); err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	data, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(data, &idx)
	var top ocispec.Index
	data, _ = os.ReadFile(filepath.Join(dir, "blobs", "sha256", idx.Manifests[0].Digest.Encoded()))
	json.Unmarshal(data, &top)
	var m ocispec.Manifest
	data, _ = os.ReadFile(filepath.Join(dir, "blobs", "sha256", top.Manifests[0].Digest.Encoded()))
	json.Unmarshal(data, &m)
	fieldPath := filepath.Join(dir, "blobs", "sha256", m.Layers[len(m.Layers)-1].Digest.Encoded())
	os.WriteFile(fieldPath, []byte(`{"rows":[],"rows_size":0,"owner":"x"}`), 0o644)
	err = runInspect(ctx, inspectFlags{}, "oci-layout://"+dir+":v1", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("field blob digest mismatch: %v", err)
	}

	if err := runExport(ctx, exportFlags{format: "docker"}, "a", "b", io.Discard); err == nil || !strings.Contains(err.Error(), `--format must be "tdfs"`) {
		t.Errorf("bad format: %v", err)
	}
	if err := runPartition(ctx, partitionFlags{layout: "x"}, host+"/ours:v1", io.Discard); err == nil || !strings.Contains(err.Error(), "no partition tag") {
		t.Errorf("no selection: %v", err)
	}
}

// writeOursLayout writes a single-manifest field image into a new layout.
func writeOursLayout(t *testing.T) string {
	t.Helper()
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	dir := t.TempDir()
	w, err := layout.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range append(img.Blobs(), img.Manifest) {
		if err := w.Bytes(digest.FromBytes(b), b); err != nil {
			t.Fatal(err)
		}
	}
	root := ocispec.Descriptor{MediaType: img.MediaType, Digest: img.Digest(), Size: int64(len(img.Manifest))}
	if err := w.Finish(root, "", "v1"); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRenderField(t *testing.T) {
	pf := &image.ImageReport{
		Platform: "linux/amd64", Manifest: digest.FromString("m"), Format: image.FormatReference,
		BaseLayers: []image.LayerReport{{Size: 1000}, {Size: 2048}}, BaseSize: 3048,
	}
	pf.AddAllotment(image.AllotmentReport{Row: 0, Col: 0, Size: 1536, Paths: []string{"/model/a.bin"}})
	pf.AddAllotment(image.AllotmentReport{Row: 0, Col: 2, Size: 10, Paths: []string{"/very/long/path/that/does/not/fit/weights.bin", "/b", "/c", "/d"}})
	pf.AddAllotment(image.AllotmentReport{Row: 2, Col: 1, Size: -1, Missing: true, Digest: digest.FromString("x")})
	var out bytes.Buffer
	renderField(&out, pf)
	want := `linux/amd64  manifest ` + digest.FromString("m").String() + `  format reference
base: 2 layers, 3.0 KiB; field: 3 allotments in 3×3, 1.5 KiB; total 4.5 KiB
    0              1                      2
  +--------------+----------------------+------------------------------+
0 | 1.5 KiB      | .                    | 10 B                         |
  | /model/a.bin |                      | …at/does/not/fit/weights.bin |
  |              |                      | /b                           |
  |              |                      | /c                           |
  |              |                      | +1 more                      |
  +--------------+----------------------+------------------------------+
1 | .            | .                    | .                            |
  +--------------+----------------------+------------------------------+
2 | .            | MISSING ` + digest.FromString("x").Encoded()[:12] + ` | .                            |
  +--------------+----------------------+------------------------------+
`
	if out.String() != want {
		t.Errorf("render:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Past the overlayfs limit, inspect says so under the header line.
func TestRenderFieldWarnsTooManyLayers(t *testing.T) {
	pf := &image.ImageReport{Platform: "linux/amd64", Manifest: digest.FromString("m"), Format: image.FormatRecord,
		BaseLayers: []image.LayerReport{{Size: 1}}, BaseSize: 1}
	for i := range field.MaxRunnableLayers {
		pf.AddAllotment(image.AllotmentReport{Row: i / 32, Col: i % 32, Size: 1, Paths: []string{"/a"}})
	}
	pf.Warning = field.RunnableWarning(len(pf.BaseLayers), len(pf.Allotments))
	var out bytes.Buffer
	renderField(&out, pf)
	lines := strings.SplitN(out.String(), "\n", 4)
	if want := "warning: the image has 501 layers (1 base + 500 allotments), more than the 500 overlayfs stacks"; !strings.HasPrefix(lines[2], want) {
		t.Fatalf("third line %q, want it to start with %q", lines[2], want)
	}
}

// An image anyone built can carry escape sequences in its record's paths or
// its platform: inspect shows them escaped, never raw.
func TestRenderFieldEscapesControlCharacters(t *testing.T) {
	pf := &image.ImageReport{Platform: "linux/amd64\x1b[2J", Manifest: digest.FromString("m"), Format: image.FormatRecord,
		Selection: "0.0.0.0\x07", BaseLayers: []image.LayerReport{{Size: 1}}, BaseSize: 1}
	pf.AddAllotment(image.AllotmentReport{Row: 0, Col: 0, Size: 1, Paths: []string{"/m/\x1b]0;pwned\x07a.bin", "/m/\x9bb"}})
	var out bytes.Buffer
	renderField(&out, pf)
	got := out.String()
	if strings.ContainsFunc(strings.ReplaceAll(got, "\n", ""), printable.IsControl) {
		t.Fatalf("inspect printed a raw control character:\n%q", got)
	}
	for _, want := range []string{`linux/amd64\x1b[2J`, `0.0.0.0\a`, `\x1b]0;pwned\aa.bin`, `/m/\x9bb`} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
