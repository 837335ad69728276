package tests

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/field"
)

// Changing one file rebuilds only its allotment: every other allotment is
// taken from cache and keeps its layer digest.
func TestRebuildOnlyChangedAllotment(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/cache/rebuild:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push", "--engine", "buildkit")
	before := pull(t, ref).allotmentLayers()

	data := make([]byte, 64<<10)
	rand.Read(data)
	writeFile(t, filepath.Join(dir, "splits/c.bin"), data)
	out := build(t, env.buildkit, dir, "-t", ref+"-changed", "--push", "--engine", "buildkit")
	after := pull(t, ref+"-changed").allotmentLayers()

	changed := field.Cell{Row: 1, Col: 0}
	cached := allotmentVertices(t, out, exampleCells)
	for cell, layer := range before {
		key := cell.String()
		if cell == changed {
			if cached[key] {
				t.Errorf("allotment %s was taken from cache after its file changed", key)
			}
			if after[cell] == layer {
				t.Errorf("allotment %s kept its layer %s after its file changed", key, layer)
			}
			continue
		}
		if !cached[key] {
			t.Errorf("allotment %s was rebuilt though none of its files changed", key)
		}
		if after[cell] != layer {
			t.Errorf("allotment %s layer changed: %s -> %s", key, layer, after[cell])
		}
	}
}

// A new base image leaves every allotment layer as it was.
func TestBaseChangeKeepsAllotmentLayers(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/cache/base:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push", "--engine", "buildkit")
	v1 := pull(t, ref)

	// The same descriptor on base v2 through the named context override.
	v2base := baseImage(t, "v2", "")
	out := build(t, env.buildkit, dir, "-t", ref+"-v2", "--push", "--engine", "buildkit", "--build-context", "base=docker-image://"+v2base)
	v2 := pull(t, ref+"-v2")

	if v2.record.BaseLayers != v1.record.BaseLayers+1 {
		t.Fatalf("base v2 has one more layer: record says %d, v1 had %d", v2.record.BaseLayers, v1.record.BaseLayers)
	}
	for cell, layer := range v1.allotmentLayers() {
		if v2.allotmentLayers()[cell] != layer {
			t.Errorf("allotment %s layer changed with the base: %s -> %s", cell, layer, v2.allotmentLayers()[cell])
		}
	}
	for cell, cached := range allotmentVertices(t, out, exampleCells) {
		if !cached {
			t.Errorf("allotment %s was rebuilt after a base change", cell)
		}
	}
	if v1.digest == v2.digest {
		t.Fatal("the image did not change with its base")
	}
}

// Two buildkitd instances with separate roots build byte-identical images
// from the same inputs; a third with an empty root imports the first one's
// registry cache and rebuilds nothing.
func TestReproducibleAcrossDaemons(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/repro/field"
	cache := env.registry + "/repro/cache:latest"
	build(t, env.buildkit, dir, "-t", ref+":a", "--push", "--engine", "buildkit", "--cache-to", "type=registry,ref="+cache+",mode=max")
	a := pull(t, ref+":a")

	other := extraBuildkitd(t, "repro")
	build(t, other, dir, "-t", ref+":b", "--push", "--engine", "buildkit")
	b := pull(t, ref+":b")
	if a.digest != b.digest {
		t.Errorf("manifest digests differ across daemons: %s vs %s", a.digest, b.digest)
	}
	for cell, layer := range a.allotmentLayers() {
		if b.allotmentLayers()[cell] != layer {
			t.Errorf("allotment %s: %s on one daemon, %s on the other", cell, layer, b.allotmentLayers()[cell])
		}
	}

	fresh := extraBuildkitd(t, "cachefrom")
	out := build(t, fresh, dir, "-t", ref+":c", "--push", "--engine", "buildkit", "--cache-from", "type=registry,ref="+cache)
	for cell, cached := range allotmentVertices(t, out, exampleCells) {
		if !cached {
			t.Errorf("allotment %s was rebuilt despite --cache-from:\n%s", cell, out)
		}
	}
	if c := pull(t, ref+":c"); c.digest != a.digest {
		t.Errorf("image from cache %s differs from the original %s", c.digest, a.digest)
	}
}

// SOURCE_DATE_EPOCH sets file times and the config's created time.
func TestSourceDateEpoch(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/epoch/field:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push", "--build-arg", "SOURCE_DATE_EPOCH=1700000000")
	img := pull(t, ref)
	if img.config.Created == nil || img.config.Created.Unix() != 1700000000 {
		t.Fatalf("created = %v", img.config.Created)
	}
	a := img.record.Allotments[0]
	entries, _ := readLayer(t, img.raw, a.Layer)
	for p, e := range entries {
		if e.hdr.ModTime.Unix() != 1700000000 {
			t.Errorf("%s mtime %v", p, e.hdr.ModTime)
		}
	}
}

// A multi-platform build gives an index whose platform manifests each carry
// the field record and share the allotment layers.
func TestMultiPlatform(t *testing.T) {
	platforms := "linux/amd64,linux/arm64"
	base := baseImage(t, "multi", platforms)
	dir, _ := example(t, base)
	ref := env.registry + "/multi/field:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push", "--platform", platforms)

	checkSharedAcrossPlatforms(t, ref)
}

// Docker media types (oci-mediatypes=false) work too; the record is in the
// config, which every media type has.
func TestDockerMediaTypes(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/docker/field:v1"
	build(t, env.buildkit, dir, "--output", "type=image,name="+ref+",push=true,oci-mediatypes=false")
	img := pull(t, ref)
	if string(img.manifest.MediaType) != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("media type %s", img.manifest.MediaType)
	}
	// The CLI's zstd default falls back to gzip: Docker has no zstd layer type.
	for _, l := range img.manifest.Layers {
		if l.MediaType != "application/vnd.docker.image.rootfs.diff.tar.gzip" {
			t.Errorf("layer %s has media type %s", l.Digest, l.MediaType)
		}
	}
	if out := ctrRun(t, ref, "ls /model/a.bin"); !strings.Contains(out, "/model/a.bin") {
		t.Errorf("containerd cannot run the Docker media type image: %s", out)
	}
	if len(img.record.Allotments) != 5 {
		t.Fatalf("record = %+v", img.record)
	}
}

// An empty allotment list builds the base image, with a warning.
func TestEmptyField(t *testing.T) {
	base := baseImage(t, "v1", "")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"base": "`+base+`", "allotments": []}`))
	ref := env.registry + "/empty/field:v1"
	out := build(t, env.buildkit, dir, "-t", ref, "--push")
	if !strings.Contains(out, "the descriptor has no allotments") {
		t.Errorf("no warning for an empty field:\n%s", out)
	}
	img := pull(t, ref)
	if len(img.manifest.Layers) != len(layers(t, base)) || img.record.BaseLayers != len(img.manifest.Layers) || len(img.record.Allotments) != 0 {
		t.Fatalf("empty field image: %d layers, record %+v", len(img.manifest.Layers), img.record)
	}
}

// YAML descriptors are found by their default name.
func TestYAMLDescriptor(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), []byte("a\n"))
	writeFile(t, filepath.Join(dir, "2dfs.yaml"), []byte("# syntax=example.invalid/2dfs\nallotments:\n  - {src: a.txt, dst: /a.txt, row: 0, col: 0}\n"))
	ref := env.registry + "/yaml/field:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push")
	if img := pull(t, ref); len(img.record.Allotments) != 1 || img.record.BaseLayers != 0 {
		t.Fatalf("record = %+v", img.record)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Run("missing source", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "here.bin"), []byte("x"))
		writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [
  {"src": "here.bin", "dst": "/here.bin", "row": 0, "col": 0},
  {"src": "gone.bin", "dst": "/gone.bin", "row": 3, "col": 1}
]}`))
		out := buildFails(t, env.buildkit, dir)
		want := `2dfs.json:3:11: allotments[1] (row 3, col 1): src[0] "gone.bin": not found in the build context`
		if !strings.Contains(out, want) {
			t.Fatalf("output does not say %q:\n%s", want, out)
		}
	})
	t.Run("invalid descriptor", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "fields.json"), []byte(`{"allotments": [{"src": "a", "dst": "/a", "row": 0, "colum": 0}]}`))
		out := buildFails(t, env.buildkit, dir, "-f", filepath.Join(dir, "fields.json"))
		if !strings.Contains(out, `fields.json:1:53: allotments[0]: "colum": unknown key in an allotment; did you mean "col"?`) {
			t.Fatalf("unexpected output:\n%s", out)
		}
	})
	t.Run("dockerfile", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY a /a\n"))
		out := buildFails(t, env.buildkit, dir, "-f", filepath.Join(dir, "Dockerfile"))
		if !strings.Contains(out, "Dockerfile looks like a Dockerfile, but this is the 2DFS frontend") {
			t.Fatalf("unexpected output:\n%s", out)
		}
	})
	t.Run("no descriptor", func(t *testing.T) {
		out := buildFails(t, env.buildkit, t.TempDir())
		if !strings.Contains(out, "no descriptor found: looked for 2dfs.json, 2dfs.yaml, 2dfs.yml") {
			t.Fatalf("unexpected output:\n%s", out)
		}
	})
	t.Run("base is a directory", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a"), []byte("a"))
		writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0}]}`))
		if err := os.Mkdir(filepath.Join(dir, "basedir"), 0o755); err != nil {
			t.Fatal(err)
		}
		out := buildFails(t, env.buildkit, dir, "--build-context", "base="+filepath.Join(dir, "basedir"))
		if !strings.Contains(out, `build context "base" must be an image`) {
			t.Fatalf("unexpected output:\n%s", out)
		}
	})
}

// An image built FROM a field image inherits the org.2dfs.field label but
// not the layout it describes: readers must see the record as stale.
func TestRecordOfDerivedImageIsStale(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/stale/field:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push")

	derived := t.TempDir()
	writeFile(t, filepath.Join(derived, "extra.txt"), []byte("on top\n"))
	writeFile(t, filepath.Join(derived, "Dockerfile"), []byte("FROM "+ref+"\nCOPY extra.txt /extra.txt\n"))
	runCmd(t, derived, filepath.Join(env.tools, "buildctl"), "--addr", env.buildkit, "build", "--frontend", "dockerfile.v0",
		"--local", "context=.", "--local", "dockerfile=.", "--output", "type=image,name="+ref+"-derived,push=true")

	cfg, err := remoteImage(t, ref+"-derived").RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(cfg, &img); err != nil {
		t.Fatal(err)
	}
	if _, ok := img.Config.Labels[field.LabelKey]; !ok {
		t.Fatal("the derived image did not inherit the label; the test proves nothing")
	}
	if _, err := field.FromConfig(cfg); err == nil || !strings.Contains(err.Error(), "field record is stale") {
		t.Fatalf("FromConfig on a derived image = %v, want a stale record error", err)
	}
}

// BuildKit keeps one incremental copy of each context folder: building
// another folder in between must not make the next build of the first one
// send every file again.
func TestContextTransferIsIncremental(t *testing.T) {
	base := baseImage(t, "v1", "")
	a, _ := example(t, base)
	b, _ := example(t, base)
	build(t, env.buildkit, a, "-t", env.registry+"/incremental/a:v1", "--push", "--engine", "buildkit")
	build(t, env.buildkit, b, "-t", env.registry+"/incremental/b:v1", "--push", "--engine", "buildkit")

	data := make([]byte, 64<<10)
	rand.Read(data)
	writeFile(t, filepath.Join(a, "splits/c.bin"), data)
	out := build(t, env.buildkit, a, "-t", env.registry+"/incremental/a:v2", "--push", "--engine", "buildkit")
	// The five sources are ~260 kB; the changed file is 64 KiB.
	if n := contextBytes(t, out); n > 150e3 {
		t.Fatalf("the re-build sent %.0f bytes of context, not just the changed file:\n%s", n, out)
	}
}
