package tests

import (
	"archive/tar"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/field"
)

// example writes the example field into a new context folder: a 2×2 grid of
// files plus a directory allotment, and an unreferenced file the build must
// not transfer. It returns the folder and the files each cell should hold.
func example(t *testing.T, base string) (string, map[field.Cell]map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	want := map[field.Cell]map[string][]byte{}
	put := func(cell field.Cell, src, dst string, size int) {
		data := make([]byte, size)
		rand.Read(data)
		writeFile(t, filepath.Join(dir, src), data)
		if want[cell] == nil {
			want[cell] = map[string][]byte{}
		}
		want[cell][dst] = data
	}
	put(field.Cell{Row: 0, Col: 0}, "splits/a.bin", "/model/a.bin", 64<<10)
	put(field.Cell{Row: 0, Col: 1}, "splits/b.bin", "/model/b.bin", 64<<10)
	put(field.Cell{Row: 1, Col: 0}, "splits/c.bin", "/model/c.bin", 64<<10)
	put(field.Cell{Row: 1, Col: 1}, "splits/d.bin", "/model/d.bin", 64<<10)
	put(field.Cell{Row: 2, Col: 0}, "tokenizer/vocab.txt", "/tokenizer/vocab.txt", 1000)
	put(field.Cell{Row: 2, Col: 0}, "tokenizer/merges/m1.txt", "/tokenizer/merges/m1.txt", 500)
	junk := make([]byte, 4<<20)
	rand.Read(junk)
	writeFile(t, filepath.Join(dir, "unreferenced.bin"), junk)

	desc := map[string]any{
		"allotments": []map[string]any{
			{"src": "splits/a.bin", "dst": "/model/a.bin", "row": 0, "col": 0},
			{"src": "splits/b.bin", "dst": "/model/", "row": 0, "col": 1},
			{"src": []string{"splits/c.bin"}, "dst": []string{"/model/c.bin"}, "row": 1, "col": 0},
			{"src": "splits/d.bin", "dst": "/model/d.bin", "row": 1, "col": 1},
			{"src": "tokenizer", "dst": "/tokenizer", "row": 2, "col": 0},
		},
	}
	if base != "" {
		desc["base"] = base
	}
	dt, _ := json.MarshalIndent(desc, "", "  ")
	writeFile(t, filepath.Join(dir, "2dfs.json"), dt)
	return dir, want
}

type pulled struct {
	digest   v1.Hash
	manifest *v1.Manifest
	config   *ocispec.Image
	raw      v1.Image
	record   *field.Record
}

func reference(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func remoteImage(t *testing.T, ref string) v1.Image {
	t.Helper()
	img, err := remote.Image(reference(t, ref))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

// pull reads a field image from the registry and checks its record.
func pull(t *testing.T, ref string) pulled {
	t.Helper()
	return inspect(t, remoteImage(t, ref))
}

// layers lists the layers of any image, a field image or not.
func layers(t *testing.T, ref string) []v1.Descriptor {
	t.Helper()
	m, err := remoteImage(t, ref).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers
}

// platformImages reads the platform manifests of a field index by
// architecture, skipping attestation manifests.
func platformImages(t *testing.T, ref string) map[string]pulled {
	t.Helper()
	idx, err := remote.Index(reference(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]pulled{}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		p := inspect(t, img)
		if p.config.Architecture != d.Platform.Architecture {
			t.Errorf("manifest for %s has a config for %s", d.Platform.Architecture, p.config.Architecture)
		}
		out[d.Platform.Architecture] = p
	}
	return out
}

// checkSharedAcrossPlatforms checks that an amd64+arm64 field index has a
// record in each platform manifest and the same allotment layers in both.
func checkSharedAcrossPlatforms(t *testing.T, ref string) {
	t.Helper()
	byArch := platformImages(t, ref)
	amd, arm := byArch["amd64"], byArch["arm64"]
	if len(byArch) != 2 || amd.record == nil || arm.record == nil || len(amd.record.Allotments) != 5 {
		t.Fatalf("want amd64 and arm64 field manifests with 5 allotments, got %v", byArch)
	}
	for cell, l := range amd.allotmentLayers() {
		if arm.allotmentLayers()[cell] != l {
			t.Errorf("allotment %s: amd64 layer %s, arm64 layer %s", cell, l, arm.allotmentLayers()[cell])
		}
	}
}

func inspect(t *testing.T, img v1.Image) pulled {
	t.Helper()
	p := pulled{raw: img}
	var err error
	if p.digest, err = img.Digest(); err != nil {
		t.Fatal(err)
	}
	if p.manifest, err = img.Manifest(); err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	p.config = &ocispec.Image{}
	if err := json.Unmarshal(cfg, p.config); err != nil {
		t.Fatal(err)
	}
	if p.record, err = field.FromConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if p.record == nil {
		t.Fatalf("image has no %s label", field.LabelKey)
	}
	return p
}

// layerDigests returns the compressed digests of the allotment layers by cell.
func (p pulled) allotmentLayers() map[field.Cell]string {
	out := map[field.Cell]string{}
	for _, a := range p.record.Allotments {
		out[a.Cell()] = p.manifest.Layers[a.Layer].Digest.String()
	}
	return out
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

// readLayer returns the entries of layer i and the sha256 of its
// uncompressed tar (its diff ID).
func readLayer(t *testing.T, img v1.Image, i int) (map[string]tarEntry, string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[i].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(rc, h))
	entries := map[string]tarEntry{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries["/"+strings.TrimSuffix(hdr.Name, "/")] = tarEntry{hdr: hdr, data: data}
	}
	io.Copy(h, rc)
	return entries, "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func TestFieldImage(t *testing.T) {
	base := baseImage(t, "v1", "")
	dir, want := example(t, base)
	ref := env.registry + "/example/field:v1"
	out := build(t, env.buildkit, dir, "-t", ref, "--push", "--engine", "buildkit", "--label", "org.example.team=ml")

	// Only the allotment sources cross the wire, not the 4 MiB junk file.
	if n := contextBytes(t, out); n > 1<<20 {
		t.Fatalf("the build transferred %.0f bytes of context, so it sent the unreferenced 4 MiB file:\n%s", n, out)
	}

	img := pull(t, ref)
	baseLayers := layers(t, base)
	if n := len(img.manifest.Layers); n != len(baseLayers)+5 {
		t.Fatalf("manifest has %d layers, want base %d + 5", n, len(baseLayers))
	}
	for i, l := range baseLayers {
		if img.manifest.Layers[i].Digest != l.Digest {
			t.Fatalf("base layer %d changed: %s vs %s", i, img.manifest.Layers[i].Digest, l.Digest)
		}
	}
	if img.record.BaseLayers != len(baseLayers) || len(img.record.Allotments) != 5 {
		t.Fatalf("record = %+v", img.record)
	}
	if img.config.Config.Labels["org.example.team"] != "ml" {
		t.Errorf("label: opt not in the config: %v", img.config.Config.Labels)
	}
	if len(img.config.RootFS.DiffIDs) != len(img.manifest.Layers) {
		t.Fatalf("%d diff_ids for %d layers", len(img.config.RootFS.DiffIDs), len(img.manifest.Layers))
	}

	cells := []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}, {Row: 2, Col: 0}}
	for i, a := range img.record.Allotments {
		if a.Cell() != cells[i] || a.Layer != len(baseLayers)+i {
			t.Fatalf("record allotment %d = %+v, want cell %v at layer %d", i, a, cells[i], len(baseLayers)+i)
		}
		entries, diffID := readLayer(t, img.raw, a.Layer)
		if got := img.config.RootFS.DiffIDs[a.Layer].String(); got != diffID {
			t.Errorf("layer %d: config diff_id %s, tar digest %s", a.Layer, got, diffID)
		}
		var files []string
		for p, e := range entries {
			if e.hdr.Uid != 0 || e.hdr.Gid != 0 || e.hdr.ModTime.Unix() != 0 {
				t.Errorf("cell %v: %s has owner %d:%d mtime %v, want 0:0 at the epoch", a.Cell(), p, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime)
			}
			switch e.hdr.Typeflag {
			case tar.TypeReg:
				files = append(files, p)
				if w, ok := want[a.Cell()][p]; !ok || !slices.Equal(w, e.data) {
					t.Errorf("cell %v: layer holds %s, which is not one of its files (or has other bytes)", a.Cell(), p)
				}
				if e.hdr.Mode&0o777 != 0o644 {
					t.Errorf("cell %v: %s has mode %o, want 644", a.Cell(), p, e.hdr.Mode)
				}
			case tar.TypeDir:
				if e.hdr.Mode&0o777 != 0o755 {
					t.Errorf("cell %v: dir %s has mode %o, want 755", a.Cell(), p, e.hdr.Mode)
				}
			default:
				t.Errorf("cell %v: unexpected entry %s of type %c", a.Cell(), p, e.hdr.Typeflag)
			}
		}
		if len(files) != len(want[a.Cell()]) {
			t.Errorf("cell %v: layer holds %v, want %d files", a.Cell(), files, len(want[a.Cell()]))
		}
	}

	// The image runs: containerd pulls it and the files are there.
	got := ctrRun(t, ref, "find /model /tokenizer -type f | sort | xargs md5sum")
	var wantSums []string
	for _, files := range want {
		for p, data := range files {
			wantSums = append(wantSums, fmt.Sprintf("%x  %s", md5.Sum(data), p))
		}
	}
	sort.Slice(wantSums, func(i, j int) bool { return strings.Fields(wantSums[i])[1] < strings.Fields(wantSums[j])[1] })
	if strings.TrimSpace(got) != strings.Join(wantSums, "\n") {
		t.Fatalf("files in the running container:\n%s\nwant:\n%s", got, strings.Join(wantSums, "\n"))
	}
}

// ctrRun pulls an image with containerd's ctr and runs a shell command in it.
func ctrRun(t *testing.T, ref, script string) string {
	t.Helper()
	ctr := func(args ...string) string {
		return runCmd(t, "", "ctr", append([]string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}, args...)...)
	}
	ctr("images", "pull", "--plain-http", ref)
	id := fmt.Sprintf("t%d", os.Getpid()) + strings.NewReplacer("/", "-", ":", "-", ".", "-").Replace(t.Name())
	return ctrRunScript(t, "tdfs-tests", ref, id, script)
}

var transferLine = regexp.MustCompile(`transferring context: ([0-9.]+)(B|kB|MB|GB)`)

// contextBytes is the largest context transfer that plain progress reports.
func contextBytes(t *testing.T, progress string) float64 {
	t.Helper()
	units := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
	var max float64
	for _, m := range transferLine.FindAllStringSubmatch(progress, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		if v*units[m[2]] > max {
			max = v * units[m[2]]
		}
	}
	if max == 0 {
		t.Fatalf("no context transfer in the progress output:\n%s", progress)
	}
	return max
}
