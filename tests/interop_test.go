package tests

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tdfs-kit/tdfs/exporter/tdfs"
)

func twodfs(t *testing.T, args ...string) string {
	t.Helper()
	return runCmd(t, "", filepath.Join(env.bin, "2dfs"), args...)
}

// layoutLayers returns the layer digests of the only image in an OCI layout.
func layoutLayers(t *testing.T, dir string) []string {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout %s: %v, %d images", dir, err, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return layerDigests(t, img)
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

type inspected struct {
	Images []struct {
		Platform   string `json:"platform"`
		Format     string `json:"format"`
		Rows, Cols int
		Allotments []struct {
			Row, Col int
			Digest   string   `json:"digest"`
			Paths    []string `json:"paths"`
		} `json:"allotments"`
	} `json:"images"`
}

// Our image → the reference format → a partition, imported and run by
// containerd, holds exactly what the same partition of our image holds.
func TestReferenceFormatRoundTrip(t *testing.T) {
	dir, want := example(t, baseImage(t, "v1", ""))
	ours := env.registry + "/interop/field:v1"
	// The reference tools serve allotments as gzip layers.
	build(t, env.buildkit, dir, "-t", ours, "--push", "--compression", "gzip")
	ref := env.registry + "/interop/field:v1-tdfs"
	twodfs(t, "export", "--format", "tdfs", ours, ref)

	// The exported image is in the reference layout: an index named by
	// 2dfs.image.name, the field layer last, diff_ids of the base only.
	idx, err := remote.Index(reference(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.Annotations[tdfs.AnnotationImageName] == "" {
		t.Errorf("index has no %s annotation: %v", tdfs.AnnotationImageName, im.Annotations)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	cfg, _ := img.ConfigFile()
	baseCount := len(layers(t, baseImage(t, "v1", "")))
	if len(m.Layers) != baseCount+1 || string(m.Layers[baseCount].MediaType) != tdfs.MediaTypeField || len(cfg.RootFS.DiffIDs) != baseCount {
		t.Fatalf("exported manifest has %d layers (last %s) and %d diff_ids; want %d base layers + the field layer",
			len(m.Layers), m.Layers[len(m.Layers)-1].MediaType, len(cfg.RootFS.DiffIDs), baseCount)
	}

	// inspect reads both formats and sees the same field.
	var a, b inspected
	for _, c := range []struct {
		ref string
		out *inspected
	}{{ours, &a}, {ref, &b}} {
		if err := json.Unmarshal([]byte(twodfs(t, "inspect", "--json", c.ref)), c.out); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.Images) != 1 || len(b.Images) != 1 || a.Images[0].Rows != 3 || a.Images[0].Cols != 2 || len(a.Images[0].Allotments) != 5 {
		t.Fatalf("inspect: %+v / %+v", a, b)
	}
	if a.Images[0].Format != "record" || b.Images[0].Format != "reference" {
		t.Errorf("formats %s, %s", a.Images[0].Format, b.Images[0].Format)
	}
	for i, x := range a.Images[0].Allotments {
		if y := b.Images[0].Allotments[i]; x.Row != y.Row || x.Col != y.Col || x.Digest != y.Digest {
			t.Errorf("allotment %d: ours %+v, exported %+v", i, x, y)
		}
	}
	if grid := twodfs(t, "inspect", ours); !strings.Contains(grid, "/model/a.bin") || !strings.Contains(grid, "/tokenizer") {
		t.Errorf("inspect drew no paths:\n%s", grid)
	}

	// The same partition of both formats has the same layers.
	sel := "--0.0.0.1--2.0.2.0"
	work := t.TempDir()
	// The export is an index (the reference tools know no other kind):
	// compare one platform's manifests.
	twodfs(t, "partition", ours+sel, "--platform", "linux/amd64", "--oci-layout", filepath.Join(work, "ours"))
	twodfs(t, "partition", ref+sel, "--platform", "linux/amd64", "--oci-layout", filepath.Join(work, "ref"))
	if o, r := layoutLayers(t, filepath.Join(work, "ours")), layoutLayers(t, filepath.Join(work, "ref")); strings.Join(o, ",") != strings.Join(r, ",") {
		t.Fatalf("partition layers differ:\nours %v\nref  %v", o, r)
	} else if len(o) != baseCount+3 {
		t.Fatalf("partition has %d layers, want %d base + 3", len(o), baseCount)
	}

	// containerd imports the tar and runs it: the selected files, no others.
	tarPath := filepath.Join(work, "part.tar")
	twodfs(t, "partition", ref+sel, "-o", tarPath)
	ctr := func(args ...string) string {
		return runCmd(t, "", "ctr", append([]string{"--address", env.ctrAddr, "--namespace", "tdfs-interop"}, args...)...)
	}
	ctr("images", "import", tarPath)
	got := ctrRunScript(t, "tdfs-interop", ref+sel, "interop", "find /model /tokenizer -type f 2>/dev/null | sort")
	var wantFiles []string
	for cell, files := range want {
		if (cell.Row == 0) || (cell.Row == 2 && cell.Col == 0) {
			for p := range files {
				wantFiles = append(wantFiles, p)
			}
		}
	}
	sort.Strings(wantFiles)
	if strings.TrimSpace(got) != strings.Join(wantFiles, "\n") {
		t.Fatalf("files in the imported partition:\n%s\nwant:\n%s", got, strings.Join(wantFiles, "\n"))
	}
}

// The proxy partitions reference-format images exactly as it partitions
// ours: the same layers for the same selection, and containerd runs them.
func TestProxyServesReferenceFormat(t *testing.T) {
	dir, want := example(t, baseImage(t, "v1", ""))
	ours := env.registry + "/interop-proxy/field:v1"
	build(t, env.buildkit, dir, "-t", ours, "--push", "--compression", "gzip")
	twodfs(t, "export", "--format", "tdfs", ours, env.registry+"/interop-proxy/field:v1-tdfs")
	proxy := startProxy(t, env.registry)

	sel := "--0.0.0.1--2.0.2.0"
	// remote.Image picks linux/amd64 out of an index.
	viaProxy := func(tag string) []string {
		return layerDigests(t, remoteImage(t, proxy.addr+"/interop-proxy/field:"+tag+sel))
	}
	o, r := viaProxy("v1"), viaProxy("v1-tdfs")
	if strings.Join(o, ",") != strings.Join(r, ",") || len(o) != len(layers(t, baseImage(t, "v1", "")))+3 {
		t.Fatalf("proxy partitions differ or are wrong:\nours      %v\nreference %v", o, r)
	}

	got, _ := ctrPullRun(t, proxy.addr+"/interop-proxy/field:v1-tdfs"+sel, "find /model /tokenizer -type f 2>/dev/null | sort")
	var wantFiles []string
	for cell, files := range want {
		if cell.Row == 0 || (cell.Row == 2 && cell.Col == 0) {
			for p := range files {
				wantFiles = append(wantFiles, p)
			}
		}
	}
	sort.Strings(wantFiles)
	if got != strings.Join(wantFiles, "\n") {
		t.Fatalf("files in the partition of the reference image:\n%s\nwant:\n%s", got, strings.Join(wantFiles, "\n"))
	}
}
