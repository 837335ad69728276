package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/field"
)

// skopeoCopy copies ref (through plain HTTP) into a new OCI layout and
// returns the manifest digest and bytes skopeo wrote there.
func skopeoCopy(t *testing.T, ref string, extra ...string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	writeFile(t, policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`))
	layout := filepath.Join(dir, "oci")
	args := append([]string{"--policy", policy, "copy", "--src-tls-verify=false"}, extra...)
	runCmd(t, "", "skopeo", append(args, "docker://"+ref, "oci:"+layout+":part")...)
	var idx ocispec.Index
	data, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("skopeo's index.json: %v\n%s", err, data)
	}
	d := idx.Manifests[0].Digest
	m, err := os.ReadFile(filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	// Every blob skopeo stored has the digest it is filed under.
	entries, _ := os.ReadDir(filepath.Join(layout, "blobs", "sha256"))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(layout, "blobs", "sha256", e.Name()))
		if sha256Digest(b) != "sha256:"+e.Name() {
			t.Fatalf("skopeo stored blob %s with other content", e.Name())
		}
	}
	return d.String(), m
}

// partitionConfig fetches the config of a partition image through crane and
// returns its field record and provenance labels.
func partitionConfig(t *testing.T, ref string) (*field.Record, map[string]string) {
	t.Helper()
	raw := []byte(crane(t, nil, "config", ref))
	var img ocispec.Image
	if err := json.Unmarshal(raw, &img); err != nil {
		t.Fatal(err)
	}
	rec, err := field.FromConfig(raw)
	if err != nil || rec == nil {
		t.Fatalf("%s: field record %v, %v", ref, rec, err)
	}
	return rec, img.Config.Labels
}

func cellsOf(rec *field.Record) []field.Cell {
	var out []field.Cell
	for _, a := range rec.Allotments {
		out = append(out, a.Cell())
	}
	return out
}

// TestProxyCtrSkopeoCrane pulls one partition through the proxy with
// containerd, runs it, and pulls it again with skopeo and crane: all three
// get the same manifest, the base layers and exactly the selected
// allotments' layers, and the container holds exactly the selected files.
func TestProxyCtrSkopeoCrane(t *testing.T) {
	f := proxyField(t)
	px := startProxy(t, env.registry)
	const selection = "0.0.1.0" // cells (0,0) and (1,0): /model/a.bin, /model/c.bin
	ref := px.addr + "/" + f.repo + ":v1--" + selection

	out, ctrDigest := ctrPullRun(t, ref, filesScript)
	if want := f.wantFiles(t, selection); out != want {
		t.Fatalf("files in the container of %s:\n%s\nwant exactly:\n%s", ref, out, want)
	}
	if strings.Contains(out, "b.bin") || strings.Contains(out, "d.bin") || strings.Contains(out, "tokenizer") {
		t.Fatalf("unselected allotments in the container:\n%s", out)
	}
	manifest := ctrContent(t, ctrDigest)
	if sha256Digest(manifest) != ctrDigest {
		t.Fatalf("ctr's manifest does not hash to %s", ctrDigest)
	}
	cfg, layers := manifestLayers(t, manifest)
	if want := f.wantLayers(t, selection); !slices.Equal(layers, want) {
		t.Fatalf("ctr got layers\n%v\nwant base + selected\n%v", layers, want)
	}
	if len(layers) != len(f.baseLs)+2 {
		t.Fatalf("%d layers, want %d base + 2", len(layers), len(f.baseLs))
	}
	if ctrDigest == f.src.digest.String() {
		t.Fatal("ctr got the source image, not a partition")
	}

	// skopeo, through the same proxy.
	skDigest, skManifest := skopeoCopy(t, ref)
	skCfg, skLayers := manifestLayers(t, skManifest)
	if !slices.Equal(skLayers, layers) || skCfg != cfg {
		t.Fatalf("skopeo got config %s layers %v; ctr got %s %v", skCfg, skLayers, cfg, layers)
	}
	if skDigest != ctrDigest {
		t.Fatalf("skopeo stored manifest %s, ctr %s", skDigest, ctrDigest)
	}

	// crane: same digest, same bytes, and the config describes the
	// partition.
	if d := crane(t, nil, "digest", ref); d != ctrDigest {
		t.Fatalf("crane digest %s, ctr %s", d, ctrDigest)
	}
	if m := crane(t, nil, "manifest", ref); m != strings.TrimSpace(string(manifest)) {
		t.Fatalf("crane manifest differs from ctr's:\n%s\n%s", m, manifest)
	}
	rec, labels := partitionConfig(t, ref)
	if got := cellsOf(rec); !slices.Equal(got, []field.Cell{{Row: 0, Col: 0}, {Row: 1, Col: 0}}) {
		t.Fatalf("partition record cells %v", got)
	}
	if labels["org.2dfs.partition.source"] != f.src.digest.String() || labels["org.2dfs.partition.selection"] != selection {
		t.Fatalf("provenance labels %v", labels)
	}

	// The whole field through the proxy is all layers of the source.
	_, all := manifestLayers(t, []byte(crane(t, nil, "manifest", px.addr+"/"+f.repo+":v1--0.0.2.1")))
	var srcLayers []string
	for _, l := range f.src.manifest.Layers {
		srcLayers = append(srcLayers, l.Digest.String())
	}
	if !slices.Equal(all, srcLayers) {
		t.Fatalf("full selection layers %v, source %v", all, srcLayers)
	}
}

// TestProxyUnionAndNested pulls a union of two rectangles, and a partition
// of a partition that was pushed back to the registry under its own tag.
func TestProxyUnionAndNested(t *testing.T) {
	f := proxyField(t)
	px := startProxy(t, env.registry)

	// Union: row 0 columns 0..1, plus cell (2,0).
	const union = "0.0.0.1--2.0.2.0"
	uref := px.addr + "/" + f.repo + ":v1--" + union
	out, ud := ctrPullRun(t, uref, filesScript)
	if want := f.wantFiles(t, union); out != want {
		t.Fatalf("files in the union partition:\n%s\nwant:\n%s", out, want)
	}
	if _, layers := manifestLayers(t, ctrContent(t, ud)); !slices.Equal(layers, f.wantLayers(t, union)) {
		t.Fatalf("union layers %v, want %v", layers, f.wantLayers(t, union))
	}
	// Another spelling of the same selection is the same image.
	if d := crane(t, nil, "digest", px.addr+"/"+f.repo+":v1--2.0.2.0--0.0.0.1--0.1.0.1"); d != ud {
		t.Fatalf("same selection, other spelling: %s vs %s", d, ud)
	}

	// A partition of a partition: tags of partitions cannot be
	// partitioned, so push the partition to the registry under a tag.
	part := env.registry + "/" + f.repo + ":part-2x2"
	crane(t, nil, "copy", px.addr+"/"+f.repo+":v1--0.0.1.1", part)
	partDigest := crane(t, nil, "digest", part)
	nref := px.addr + "/" + f.repo + ":part-2x2--0.0.0.1"
	out, nd := ctrPullRun(t, nref, filesScript)
	if want := f.wantFiles(t, "0.0.0.1"); out != want {
		t.Fatalf("files in the partition of a partition:\n%s\nwant:\n%s", out, want)
	}
	_, layers := manifestLayers(t, ctrContent(t, nd))
	if want := f.wantLayers(t, "0.0.0.1"); !slices.Equal(layers, want) {
		t.Fatalf("partition of a partition: layers %v, want those of the source's 0.0.0.1 %v", layers, want)
	}
	rec, labels := partitionConfig(t, nref)
	if got := cellsOf(rec); !slices.Equal(got, []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}}) {
		t.Fatalf("nested record cells %v", got)
	}
	if labels["org.2dfs.partition.source"] != partDigest {
		t.Fatalf("nested partition's source label %q, want the pushed partition %s", labels["org.2dfs.partition.source"], partDigest)
	}
	// Selecting cells the partition does not hold gives the base alone.
	_, baseOnly := manifestLayers(t, []byte(crane(t, nil, "manifest", px.addr+"/"+f.repo+":part-2x2--2.0.2.0")))
	if !slices.Equal(baseOnly, f.baseLs) {
		t.Fatalf("partition of a partition outside it: layers %v, want only the base %v", baseOnly, f.baseLs)
	}

	// Partition tags cannot be pushed through the proxy.
	out, err := tryCrane(nil, "copy", part, px.addr+"/"+f.repo+":v1--1.1.1.1")
	if err == nil || !strings.Contains(out, "DENIED") {
		t.Fatalf("push of a partition tag: err %v\n%s", err, out)
	}
	if _, err := tryCrane(nil, "digest", env.registry+"/"+f.repo+":v1--1.1.1.1"); err == nil {
		t.Fatal("the registry has a partition tag after a refused push")
	}
}

// TestProxyMultiPlatform partitions a two-platform index: every platform
// manifest is partitioned against its own base, containerd pulls and runs
// the host's platform and pulls the other.
func TestProxyMultiPlatform(t *testing.T) {
	const platforms = "linux/amd64,linux/arm64"
	base := baseImage(t, "multi", platforms)
	dir, want := example(t, base)
	src := env.registry + "/proxy/multi:v1"
	build(t, env.buildkit, dir, "-t", src, "--push", "--platform", platforms)
	px := startProxy(t, env.registry)
	const selection = "1.0.2.0" // cells (1,0) and (2,0)
	pref := px.addr + "/proxy/multi:v1--" + selection

	srcIdx := remoteIndex(t, src)
	partIdx := remoteIndex(t, pref)
	if partIdx.MediaType != srcIdx.MediaType || len(partIdx.Manifests) != len(srcIdx.Manifests) {
		t.Fatalf("partition index: %s with %d entries; source %s with %d", partIdx.MediaType, len(partIdx.Manifests), srcIdx.MediaType, len(srcIdx.Manifests))
	}
	srcByArch, partByArch := platformImages(t, src), platformImages(t, pref)
	if len(partByArch) != 2 || partByArch["amd64"].record == nil || partByArch["arm64"].record == nil {
		t.Fatalf("partition platforms: %v", partByArch)
	}
	s := sel(t, selection)
	for arch, srcImg := range srcByArch {
		partImg, ok := partByArch[arch]
		if !ok {
			t.Fatalf("partition lacks %s", arch)
		}
		var wantLayers []string
		for i := 0; i < srcImg.record.BaseLayers; i++ {
			wantLayers = append(wantLayers, srcImg.manifest.Layers[i].Digest.String())
		}
		for _, a := range srcImg.record.Allotments {
			if s.Contains(a.Cell()) {
				wantLayers = append(wantLayers, srcImg.manifest.Layers[a.Layer].Digest.String())
			}
		}
		var got []string
		for _, l := range partImg.manifest.Layers {
			got = append(got, l.Digest.String())
		}
		if !slices.Equal(got, wantLayers) {
			t.Fatalf("%s: partition layers %v, want %v", arch, got, wantLayers)
		}
		if got := cellsOf(partImg.record); !slices.Equal(got, []field.Cell{{Row: 1, Col: 0}, {Row: 2, Col: 0}}) {
			t.Fatalf("%s: record cells %v", arch, got)
		}
		if partImg.config.Config.Labels["org.2dfs.partition.source"] != srcImg.digest.String() {
			t.Fatalf("%s: source label %q, want the %s source manifest %s", arch, partImg.config.Config.Labels["org.2dfs.partition.source"], arch, srcImg.digest)
		}
	}
	// Each platform got its own partition (its config names its
	// architecture; platformImages checked that).
	if partByArch["amd64"].digest == partByArch["arm64"].digest {
		t.Fatal("amd64 and arm64 partitions are the same manifest")
	}

	// containerd: runs the host platform (amd64 here) ...
	out, d := ctrPullRun(t, pref, filesScript)
	f := &fieldFixture{want: want}
	if wantFiles := f.wantFiles(t, selection); out != wantFiles {
		t.Fatalf("files in the multi-platform partition:\n%s\nwant:\n%s", out, wantFiles)
	}
	if d != crane(t, nil, "digest", pref) {
		t.Fatalf("ctr recorded %s, the proxy resolves %s", d, crane(t, nil, "digest", pref))
	}
	// ... and pulls the other platform's content through the proxy too.
	runCmd(t, "", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests", "images", "pull", "--plain-http", "--platform", "linux/arm64", pref)
	// skopeo copies the whole index.
	skDigest, _ := skopeoCopy(t, pref, "--all")
	if skDigest != d {
		t.Fatalf("skopeo --all stored index %s, ctr %s", skDigest, d)
	}
}

func remoteIndex(t *testing.T, ref string) *ocispec.Index {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(desc.Manifest, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) == 0 {
		t.Fatalf("%s is not an index: %s", ref, desc.Manifest)
	}
	if idx.MediaType == "" {
		idx.MediaType = string(desc.MediaType)
	}
	return &idx
}

// TestProxyDockerMediaTypes partitions an image with Docker schema 2 media
// types (oci-mediatypes=false): the partition keeps them, containerd runs
// it, and skopeo gets the same layers. Gzip, since Docker schema 2 has no
// zstd layer type (2dfs build's zstd default with oci-mediatypes=false
// gives layers containerd cannot unpack).
func TestProxyDockerMediaTypes(t *testing.T) {
	dir, want := example(t, baseImage(t, "v1", ""))
	src := env.registry + "/proxy/docker:v1"
	build(t, env.buildkit, dir, "--output", "type=image,name="+src+",push=true,oci-mediatypes=false,compression=gzip")
	srcImg := pull(t, src)
	px := startProxy(t, env.registry)
	const selection = "0.1.1.1"
	ref := px.addr + "/proxy/docker:v1--" + selection

	out, d := ctrPullRun(t, ref, filesScript)
	f := &fieldFixture{want: want}
	if out != f.wantFiles(t, selection) {
		t.Fatalf("files:\n%s\nwant:\n%s", out, f.wantFiles(t, selection))
	}
	manifest := ctrContent(t, d)
	var m struct{ MediaType string }
	if err := json.Unmarshal(manifest, &m); err != nil || m.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("partition media type %q (%v), want Docker schema 2", m.MediaType, err)
	}
	_, ls := manifestLayers(t, manifest)
	var wantLayers []string
	s := sel(t, selection)
	for i, l := range srcImg.manifest.Layers {
		if i < srcImg.record.BaseLayers {
			wantLayers = append(wantLayers, l.Digest.String())
		}
	}
	for _, a := range srcImg.record.Allotments {
		if s.Contains(a.Cell()) {
			wantLayers = append(wantLayers, srcImg.manifest.Layers[a.Layer].Digest.String())
		}
	}
	if !slices.Equal(ls, wantLayers) {
		t.Fatalf("layers %v, want %v", ls, wantLayers)
	}
	if cd := crane(t, nil, "digest", ref); cd != d {
		t.Fatalf("crane %s, ctr %s", cd, d)
	}
	// skopeo converts to OCI for an OCI layout: other manifest bytes, the
	// same layer blobs.
	_, sk := skopeoCopy(t, ref)
	if _, skl := manifestLayers(t, sk); !slices.Equal(skl, ls) {
		t.Fatalf("skopeo layers %v, ctr %v", skl, ls)
	}
}

// TestProxyPartitionAsBuildKitBase builds a Dockerfile FROM a partition tag
// served by the proxy: BuildKit resolves and pulls it like any base image,
// and a RUN step sees only the selected allotments.
func TestProxyPartitionAsBuildKitBase(t *testing.T) {
	f := proxyField(t)
	px := startProxy(t, env.registry)
	if err := daemons.PlainHTTP(px.addr); err != nil {
		t.Fatal(err)
	}
	bk := extraBuildkitd(t, "proxy-base")

	const selection = "0.0.1.0"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "list.sh"), []byte(filesScript+"\n"))
	writeFile(t, filepath.Join(dir, "Dockerfile"), []byte("FROM "+px.addr+"/"+f.repo+":v1--"+selection+"\n"+
		"COPY list.sh /list.sh\n"+
		`RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sh /list.sh > /listing"]`+"\n"))
	out := filepath.Join(t.TempDir(), "out")
	runCmd(t, "", filepath.Join(env.tools, "buildctl"), "--addr", bk, "build", "--progress", "plain",
		"--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir,
		"--output", "type=local,dest="+out)
	listing, err := os.ReadFile(filepath.Join(out, "listing"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(listing)); got != f.wantFiles(t, selection) {
		t.Fatalf("files a RUN step saw on the partition:\n%s\nwant:\n%s", got, f.wantFiles(t, selection))
	}
	for _, p := range []string{"model/b.bin", "model/d.bin", "tokenizer"} {
		if _, err := os.Stat(filepath.Join(out, p)); err == nil {
			t.Errorf("the build's rootfs has the unselected %s", p)
		}
	}
}
