package tests

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// largeField writes a rows × cols field with one small file per cell at a
// long, realistic path, and returns the context folder. The file of cell
// (r, c) holds "cell r,c".
func largeField(t *testing.T, base string, rows, cols int) string {
	t.Helper()
	dir := t.TempDir()
	var allotments []map[string]any
	for r := range rows {
		for c := range cols {
			src := fmt.Sprintf("splits/layer-%02d/shard-%02d.safetensors", r, c)
			writeFile(t, filepath.Join(dir, src), fmt.Appendf(nil, "cell %d,%d", r, c))
			allotments = append(allotments, map[string]any{"src": src, "dst": largePath(r, c), "row": r, "col": c})
		}
	}
	desc, _ := json.Marshal(map[string]any{"base": base, "allotments": allotments})
	writeFile(t, filepath.Join(dir, "2dfs.json"), desc)
	return dir
}

// largePath is where cell (r, c) of a large field puts its file: 80 bytes
// or so, as a sharded model checkpoint would.
func largePath(r, c int) string {
	return fmt.Sprintf("/model/large-language-model-v2/splits/transformer-layer-%02d/attention-shard-%02d.safetensors", r, c)
}

// rawConfig reads the config blob of an image through crane, byte for byte.
func rawConfig(t *testing.T, ref string) []byte {
	t.Helper()
	return []byte(runCmd(t, "", filepath.Join(env.tools, "crane"), "config", ref, "--insecure"))
}

// TestLargeFieldRunsWhole builds a 16 × 16 field with long paths, far past
// what a version 1 record could hold in a label (containerd refuses labels
// over 4,096 bytes), pushes it, copies it with crane and skopeo, and runs it
// whole through containerd.
func TestLargeFieldRunsWhole(t *testing.T) {
	const n = 16
	base := baseImage(t, "v1", "")
	ref := env.registry + "/large/field16:v1"
	out := build(t, env.buildkit, largeField(t, base, n, n), "-t", ref, "--push")
	if strings.Contains(out, "WARNING: the image has") {
		t.Errorf("a field of %d layers runs anywhere, but the build warned:\n%s", n*n+1, out)
	}

	// containerd pulls and runs the whole field. (With the version 1
	// record, this failed: "label key and value length (... bytes) greater
	// than maximum size (4096 bytes), key: org.2dfs.field".)
	got := ctrRun(t, ref, `find /model -type f | wc -l; cat `+largePath(0, 0)+`; echo; cat `+largePath(n-1, n-1))
	if want := fmt.Sprintf("%d\ncell 0,0\ncell %d,%d", n*n, n-1, n-1); strings.TrimSpace(got) != want {
		t.Fatalf("the running container sees:\n%s\nwant:\n%s", got, want)
	}

	// The record: a small header label, the allotments in the config's
	// top-level key, exactly as the frontend wrote them (BuildKit's
	// exporter keeps unknown top-level keys).
	config := rawConfig(t, ref)
	rec, err := field.FromConfig(config)
	if err != nil || rec == nil {
		t.Fatalf("field record: %v, %v", rec, err)
	}
	if rec.Version != field.RecordVersion || len(rec.Allotments) != n*n {
		t.Fatalf("record version %d with %d allotments, want version %d with %d", rec.Version, len(rec.Allotments), field.RecordVersion, n*n)
	}
	for i, a := range rec.Allotments {
		if r, c := i/n, i%n; a.Cell() != (field.Cell{Row: r, Col: c}) || len(a.Dst) != 1 || a.Dst[0] != largePath(r, c) {
			t.Fatalf("allotment %d = %+v, want cell %d,%d writing %s", i, a, r, c, largePath(r, c))
		}
	}
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		t.Fatal(err)
	}
	for k, v := range img.Config.Labels {
		if len(k)+len(v) > 4096 {
			t.Errorf("label %s is %d bytes with its key, over containerd's 4,096", k, len(k)+len(v))
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(config, &top); err != nil {
		t.Fatal(err)
	}
	if len(top[field.ConfigKey]) < 4096 {
		t.Fatalf("%s holds %d bytes: the field is too small to prove a label could not hold it", field.ConfigKey, len(top[field.ConfigKey]))
	}

	// crane and skopeo copy the config blob as it is: same config digest,
	// same manifest digest, the record still reads.
	srcDigest := strings.TrimSpace(runCmd(t, "", filepath.Join(env.tools, "crane"), "digest", ref, "--insecure"))
	craneRef := env.registry + "/large/field16-crane:v1"
	runCmd(t, "", filepath.Join(env.tools, "crane"), "copy", ref, craneRef, "--insecure")
	if got := strings.TrimSpace(runCmd(t, "", filepath.Join(env.tools, "crane"), "digest", craneRef, "--insecure")); got != srcDigest {
		t.Errorf("crane copy: manifest digest %s, want %s", got, srcDigest)
	}
	if got := rawConfig(t, craneRef); string(got) != string(config) {
		t.Errorf("crane copy changed the config")
	}
	skopeoDigest, skopeoManifest := skopeoCopy(t, ref)
	if skopeoDigest != srcDigest {
		t.Errorf("skopeo copy: manifest digest %s, want %s", skopeoDigest, srcDigest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(skopeoManifest, &m); err != nil {
		t.Fatal(err)
	}
	if want := sha256Digest(config); m.Config.Digest.String() != want {
		t.Errorf("skopeo copy: config digest %s, want %s", m.Config.Digest, want)
	}

	// containerd's copy of the config is the registry's.
	stored, err := exec.Command("ctr", "--address", env.ctrAddr, "--namespace", "tdfs-tests", "content", "get", sha256Digest(config)).Output()
	if err != nil {
		t.Fatalf("ctr content get %s: %v\n%s", sha256Digest(config), err, testenv.ExitStderr(err))
	}
	if string(stored) != string(config) {
		t.Errorf("containerd stored another config")
	}
}

// TestLargeFieldPartition builds a 32 × 32 field (more layers than overlayfs
// stacks, so the whole image does not run) and runs a partition of it
// through the proxy.
func TestLargeFieldPartition(t *testing.T) {
	const n = 32
	base := baseImage(t, "v1", "")
	src := env.registry + "/large/field32:v1"
	out := build(t, env.buildkit, largeField(t, base, n, n), "-t", src, "--push")
	rec, err := field.FromConfig(rawConfig(t, src))
	if err != nil || rec == nil || len(rec.Allotments) != n*n {
		t.Fatalf("field record: %v, %v", rec, err)
	}

	// The build and inspect say the whole image will not run, and why.
	tooMany := fmt.Sprintf("the image has %d layers (%d base + %d allotments), more than the 500 overlayfs stacks", rec.Layers(), rec.BaseLayers, n*n)
	if !strings.Contains(out, "WARNING: "+tooMany) {
		t.Errorf("the build did not warn %q:\n%s", tooMany, out)
	}
	if got := twodfs(t, "inspect", "--insecure", src); !strings.Contains(got, "warning: "+tooMany) {
		t.Errorf("inspect did not warn %q:\n%.2000s", tooMany, got)
	}

	px := startProxy(t, env.registry)
	const selection = "30.29.31.31" // rows 30..31, cols 29..31: six cells
	pref := px.addr + "/large/field32:v1--" + selection
	part, err := field.FromConfig(rawConfig(t, pref))
	if err != nil || part == nil {
		t.Fatalf("partition record: %v, %v", part, err)
	}
	var cells []string
	for _, a := range part.Allotments {
		cells = append(cells, a.Cell().String())
	}
	if got := strings.Join(cells, " "); got != "30,29 30,30 30,31 31,29 31,30 31,31" || part.BaseLayers != rec.BaseLayers {
		t.Fatalf("partition holds %s on %d base layers, want six cells on %d", got, part.BaseLayers, rec.BaseLayers)
	}
	ran, _ := ctrPullRun(t, pref, `find /model -type f | sort | xargs cat; echo; [ -x /bin/busybox ] && echo "base: busybox ok"`)
	if want := "cell 30,29cell 30,30cell 30,31cell 31,29cell 31,30cell 31,31\nbase: busybox ok"; ran != want {
		t.Fatalf("the partition's container sees:\n%s\nwant:\n%s", ran, want)
	}
}

// TestTooManyAllotmentsRefused: descriptors past BuildKit's limits are
// refused before any work, with the limit and where in the file.
func TestTooManyAllotmentsRefused(t *testing.T) {
	for _, tc := range []struct {
		name       string
		allotments int
		args       []string
		want       string
	}{
		{"count", descriptor.MaxAllotments + 1, nil,
			"2dfs.json:9002:1: allotments[9000] (row 9, col 0): the descriptor has 9001 allotments, over the maximum of 9000"},
		{"platforms", 4999, []string{"--platform", "linux/amd64,linux/arm64"},
			"2dfs.json:4999:1: allotments[4997] (row 4, col 997): 4999 allotments on a base of 0 layers for 2 platform(s) make an image of 10003 descriptors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var b strings.Builder
			b.WriteString("{\"allotments\": [\n")
			for i := range tc.allotments {
				if i > 0 {
					b.WriteString(",\n")
				}
				fmt.Fprintf(&b, `{"src": "s/%d", "dst": "/d/%d", "row": %d, "col": %d}`, i, i, i/1000, i%1000)
			}
			b.WriteString("\n]}\n")
			writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(b.String()))
			start := time.Now()
			out := buildFails(t, env.buildkit, dir, append([]string{"-t", env.registry + "/large/refused:v1"}, tc.args...)...)
			took := time.Since(start)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("want %q in:\n%s", tc.want, out)
			}
			// The whole CLI run: connect, send the descriptor, refuse.
			t.Logf("refused in %v", took)
			if took > 10*time.Second {
				t.Errorf("refusing took %v", took)
			}
		})
	}
}
