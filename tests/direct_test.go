package tests

import (
	"archive/tar"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/direct"
	"github.com/tdfs-kit/tdfs/direct/layer"
	"github.com/tdfs-kit/tdfs/llb"
	"github.com/tdfs-kit/tdfs/tests/testenv"
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

// digestOf is the digest `2dfs build` prints on stdout: the last line that
// is one.
func digestOf(t *testing.T, out string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "sha256:") && len(l) == 71 {
			return l
		}
	}
	t.Fatalf("no image digest in the output:\n%s", out)
	return ""
}

// The direct engine pushes the image the BuildKit engine pushes, digest for
// digest: manifest (so config, history, field record and every layer), or
// index for several platforms.
func TestDirectEngineSameImage(t *testing.T) {
	base := baseImage(t, "v1", "")
	exampleDir, want := example(t, base)
	multiBase := baseImage(t, "multi", "linux/amd64,linux/arm64")
	multiDir, _ := example(t, multiBase)
	odd := directContext(t)
	dockerBase := dockerTypedBase(t, base)
	// BuildKit exports a layer it exported before in the compression it
	// had then (2dfs build does not force compression), and the cases
	// above export these contexts as zstd: the Docker cases, whose zstd
	// default becomes gzip, get a buildkitd of their own.
	dockerBK := extraBuildkitd(t, "direct-docker")
	for _, c := range []struct {
		name string
		dir  string
		args []string
		// docker asks for Docker's media types (oci-mediatypes=false on a
		// type=image output); else -t NAME --push, OCI's.
		docker bool
	}{
		{"base-label", exampleDir, []string{"--label", "org.example.team=ml"}, false},
		{"odd-epoch-gzip", odd, []string{"--build-arg", "SOURCE_DATE_EPOCH=1700000000", "--compression", "gzip"}, false},
		{"multi-platform", multiDir, []string{"--platform", "linux/amd64,linux/arm64"}, false},
		{"base-override", odd, []string{"--build-context", "base=docker-image://" + base}, false},
		// An OCI base (gzip) exported with Docker's types, the CLI's zstd
		// default turned into gzip; a Docker manifest list; Docker's
		// uncompressed layer type (another epoch, so other layers than the
		// gzip ones of the same context); a Docker-typed base mapped to
		// OCI's types and kept in Docker's.
		{"docker-base-label", exampleDir, []string{"--label", "org.example.team=ml"}, true},
		{"docker-multi-platform", multiDir, []string{"--platform", "linux/amd64,linux/arm64"}, true},
		{"docker-uncompressed", odd, []string{"--compression", "uncompressed", "--build-arg", "SOURCE_DATE_EPOCH=1600000000"}, true},
		{"oci-from-docker-base", odd, []string{"--build-context", "base=docker-image://" + dockerBase}, false},
		{"docker-from-docker-base", odd, []string{"--build-context", "base=docker-image://" + dockerBase}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ref := env.registry + "/direct-same/" + c.name
			target := func(tag string) []string {
				if c.docker {
					return []string{"--output", "type=image,name=" + ref + ":" + tag + ",push=true,oci-mediatypes=false"}
				}
				return []string{"-t", ref + ":" + tag, "--push"}
			}
			addr := env.buildkit
			if c.docker {
				addr = dockerBK
			}
			bk := build(t, addr, c.dir, append(append(target("buildkit"), "--engine", "buildkit"), c.args...)...)
			out := build(t, env.buildkit, c.dir, append(target("direct"), c.args...)...)
			if !strings.Contains(out, "[2dfs] engine: direct") {
				t.Fatalf("auto did not pick the direct engine for a push of local sources:\n%s", out)
			}
			if got, want := digestOf(t, out), digestOf(t, bk); got != want {
				t.Fatalf("direct engine pushed %s, BuildKit %s:\n%s\n%s", got, want, out, explainDiff(t, ref+":direct", ref+":buildkit"))
			}
			desc, err := remote.Get(reference(t, ref+":direct"))
			if err != nil {
				t.Fatal(err)
			}
			if gotDocker := strings.Contains(string(desc.MediaType), "docker"); gotDocker != c.docker {
				t.Fatalf("pushed a %s, docker media types asked: %v", desc.MediaType, c.docker)
			}
			// The registry serves it under the tag, as BuildKit's.
			if strings.Contains(c.name, "multi") {
				checkSharedAcrossPlatforms(t, ref+":direct")
			} else if d := pull(t, ref+":direct").digest.String(); d != digestOf(t, bk) {
				t.Fatalf("tag direct points at %s", d)
			}
		})
	}

	// The direct image runs under containerd with the files in place.
	got := ctrRun(t, env.registry+"/direct-same/base-label:direct", "find /model /tokenizer -type f | sort | xargs md5sum")
	var sums []string
	for _, files := range want {
		for p, data := range files {
			sums = append(sums, fmt.Sprintf("%x  %s", md5.Sum(data), p))
		}
	}
	sort.Slice(sums, func(i, j int) bool { return strings.Fields(sums[i])[1] < strings.Fields(sums[j])[1] })
	if strings.TrimSpace(got) != strings.Join(sums, "\n") {
		t.Fatalf("files in the running container:\n%s\nwant:\n%s", got, strings.Join(sums, "\n"))
	}
}

// A re-run with nothing changed reads no file and uploads nothing: every
// allotment comes from the stat cache and is found in the registry. A
// changed file is read again, and only its allotment is uploaded.
func TestDirectNoOpRebuild(t *testing.T) {
	dir, _ := example(t, "")
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	ref := env.registry + "/direct-noop/field"
	// Sources written within the cache's racy window of a build are not
	// trusted from it next time (they are read again), so let them age.
	time.Sleep(300 * time.Millisecond)
	first := build(t, env.buildkit, dir, "-t", ref+":v1", "--push", "--engine", "direct")
	if !strings.Contains(first, "5 allotments read, 0 unread") {
		t.Fatalf("first build did not upload 5 layers:\n%s", first)
	}
	again := build(t, env.buildkit, dir, "-t", ref+":v1", "--push", "--engine", "direct")
	if !strings.Contains(again, "0 allotments read, 5 unread") {
		t.Fatalf("no-op re-run read or uploaded layers:\n%s", again)
	}
	if digestOf(t, again) != digestOf(t, first) {
		t.Fatalf("no-op re-run changed the image")
	}

	writeFile(t, filepath.Join(dir, "splits/c.bin"), []byte("changed\n"))
	time.Sleep(300 * time.Millisecond)
	changed := build(t, env.buildkit, dir, "-t", ref+":v2", "--push", "--engine", "direct")
	if !strings.Contains(changed, "1 allotments read, 4 unread") {
		t.Fatalf("after one file changed:\n%s", changed)
	}
	// The same files pushed to another repository of the registry are
	// mounted from the first, not read.
	other := build(t, env.buildkit, dir, "-t", env.registry+"/direct-noop/other:v2", "--push", "--engine", "direct")
	if !strings.Contains(other, "0 allotments read") {
		t.Fatalf("push to another repository read layers:\n%s", other)
	}
	if digestOf(t, other) != digestOf(t, changed) {
		t.Fatalf("same inputs, other repository, other image")
	}
}

// indexDigest reads the digest index.json names in an OCI layout tar.
func indexDigest(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s has no index.json: %v", file, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		if len(idx.Manifests) != 1 {
			t.Fatalf("index.json lists %d manifests", len(idx.Manifests))
		}
		return idx.Manifests[0].Digest.String()
	}
}

// --output type=oci,dest=FILE writes the image BuildKit's oci exporter
// writes, base layers copied in.
func TestDirectOCILayout(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	out := t.TempDir()
	name := env.registry + "/direct-layout/field:v1"
	build(t, env.buildkit, dir, "--engine", "buildkit", "-t", name, "--output", "type=oci,dest="+filepath.Join(out, "bk.tar"))
	log := build(t, env.buildkit, dir, "-t", name, "--output", "type=oci,dest="+filepath.Join(out, "direct.tar"))
	if !strings.Contains(log, "[2dfs] engine: direct") {
		t.Fatalf("auto did not pick the direct engine for an OCI layout:\n%s", log)
	}
	// -t names the image in the layout; nothing is pushed.
	if _, err := remote.Head(reference(t, name)); err == nil {
		t.Fatalf("an OCI layout build pushed %s", name)
	}
	if got, want := indexDigest(t, filepath.Join(out, "direct.tar")), indexDigest(t, filepath.Join(out, "bk.tar")); got != want {
		t.Fatalf("direct layout holds %s, BuildKit's %s", got, want)
	}
	// Docker's media types in the layout, as BuildKit's oci exporter
	// writes them with oci-mediatypes=false.
	// (A fresh buildkitd: this one exported the layers as zstd above and
	// would give the zstd blobs again, which Docker's gzip default is not.
	// No -t: with it the BuildKit engine also exports to buildkitd's image
	// store, OCI and zstd, in the same solve, and the layout may get those
	// blobs.)
	build(t, extraBuildkitd(t, "direct-layout-docker"), dir, "--engine", "buildkit", "--output", "type=oci,oci-mediatypes=false,dest="+filepath.Join(out, "bk-docker.tar"))
	log = build(t, env.buildkit, dir, "--output", "type=oci,oci-mediatypes=false,dest="+filepath.Join(out, "direct-docker.tar"))
	if !strings.Contains(log, "[2dfs] engine: direct") {
		t.Fatalf("auto did not pick the direct engine for Docker media types:\n%s", log)
	}
	got, want := indexDigest(t, filepath.Join(out, "direct-docker.tar")), indexDigest(t, filepath.Join(out, "bk-docker.tar"))
	if got != want {
		dm, bm := layoutBlob(t, filepath.Join(out, "direct-docker.tar"), got), layoutBlob(t, filepath.Join(out, "bk-docker.tar"), want)
		t.Fatalf("direct layout with Docker media types holds %s, BuildKit's %s:\nmanifest: %s\n%s\n%s", got, want, firstDiff(dm, bm), dm, bm)
	}
	if got == indexDigest(t, filepath.Join(out, "direct.tar")) {
		t.Fatalf("oci-mediatypes=false made the OCI image %s", got)
	}
	// Every blob of the image is in the layout: skopeo-free check with
	// crane's layout reader.
	runCmd(t, "", "tar", "-xf", filepath.Join(out, "direct.tar"), "-C", out)
	ii, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ii.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layout lacks a layer: %v", err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer in the layout: %v", err)
		}
		rc.Close()
	}
}

// explainDiff shows the first manifest and config bytes where two images
// differ, to say why two digests are not equal.
func explainDiff(t *testing.T, a, b string) string {
	t.Helper()
	ia, ib := remoteImage(t, a), remoteImage(t, b)
	ma, _ := ia.RawManifest()
	mb, _ := ib.RawManifest()
	ca, _ := ia.RawConfigFile()
	cb, _ := ib.RawConfigFile()
	return "manifest:\n" + firstDiff(ma, mb) + "\nconfig:\n" + firstDiff(ca, cb)
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	if i == len(a) && i == len(b) {
		return "equal"
	}
	lo := max(0, i-80)
	return fmt.Sprintf("at byte %d:\n  %q\n  %q", i, a[lo:min(len(a), i+160)], b[lo:min(len(b), i+160)])
}

// dockerTypedBase pushes base again with Docker's manifest, config and
// layer media types (the same layer blobs), as an image built by an old
// docker build is, and returns its reference.
func dockerTypedBase(t *testing.T, base string) string {
	t.Helper()
	src := remoteImage(t, base)
	cfg, err := src.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := src.Layers()
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.DockerManifestSchema2), types.DockerConfigJSON)
	for _, l := range ls {
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.DockerLayer}); err != nil {
			t.Fatal(err)
		}
	}
	if img, err = mutate.Config(img, cfg.Config); err != nil {
		t.Fatal(err)
	}
	ref := env.registry + "/base:docker-types"
	if err := remote.Write(reference(t, ref), img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// A base in another registry: its layers are copied into the target
// registry (no cross-repository mount exists between registries), and the
// image is BuildKit's, digest for digest.
func TestDirectBaseFromOtherRegistry(t *testing.T) {
	// Not the buildkitd's name: hack/daemons keeps one pid file per name,
	// and a registry sharing it outlived every run.
	other, err := daemons.ExtraRegistry("direct-other-registry")
	if err != nil {
		t.Fatal(err)
	}
	// Only a buildkitd started after the registry reaches it.
	addr := extraBuildkitd(t, "direct-other")
	base := other + "/base:v1"
	if err := testenv.BaseImage(env.root, addr, base, "", ""); err != nil {
		t.Fatal(err)
	}
	dir := directContext(t)
	ref := env.registry + "/direct-other/field"
	bk := build(t, addr, dir, "-t", ref+":buildkit", "--push", "--engine", "buildkit", "--build-context", "base=docker-image://"+base)
	// A repository of its own: BuildKit's push put the base's layers into
	// ref, where the direct engine would find them and copy nothing.
	bkRef := ref
	ref = env.registry + "/direct-other/field-direct"
	out := build(t, addr, dir, "-t", ref+":direct", "--push", "--engine", "direct", "--build-context", "base=docker-image://"+base)
	if got, want := digestOf(t, out), digestOf(t, bk); got != want {
		t.Fatalf("direct engine pushed %s, BuildKit %s:\n%s\n%s", got, want, out, explainDiff(t, ref+":direct", bkRef+":buildkit"))
	}
	baseLayers := layers(t, base)
	if !strings.Contains(out, "copied from "+base) {
		t.Fatalf("the base's layers were not copied across registries:\n%s", out)
	}
	// Each base layer is in the target repository, byte for byte.
	for _, d := range baseLayers {
		dref, err := name.NewDigest(ref+"@"+d.Digest.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		l, err := remote.Layer(dref)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("base layer %s not in %s: %v", d.Digest, ref, err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != d.Size {
			t.Fatalf("base layer %s in %s: %d bytes, %v; want %d", d.Digest, ref, n, err, d.Size)
		}
	}
}

// layoutBlob reads blob DGST from an OCI layout tar.
func layoutBlob(t *testing.T, file, dgst string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	want := "blobs/" + strings.Replace(dgst, ":", "/", 1)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s has no %s: %v", file, want, err)
		}
		if h.Name == want {
			dt, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return dt
		}
	}
}
