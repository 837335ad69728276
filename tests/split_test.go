package tests

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/safetensors"
	"github.com/tdfs-kit/tdfs/split/splittest"
)

// TestSplitBuildPullStage splits a sharded checkpoint with `2dfs split`,
// builds and pushes the field it wrote with `2dfs build`, and pulls one
// stage's partition tag through the proxy: the image holds exactly that
// stage's safetensors files (whose headers name exactly the stage's tensors,
// as the stage index says) and the other files, byte for byte, and nothing
// of the other stages.
func TestSplitBuildPullStage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ckpt")
	if err := splittest.WriteFolder(src, splittest.Llama(6, 32), 2); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "field")
	base := baseImage(t, "v1", "")
	printed := runCmd(t, "", filepath.Join(env.bin, "2dfs"), "split", src, "-o", out, "--stages", "3", "--cols", "2", "--base", base)
	const stage, tag = 1, "--1.0.1.1--3.0.3.0"
	if !strings.Contains(printed, "stage 1  layers 2-3") || !strings.Contains(printed, "pull TAG"+tag) {
		t.Fatalf("2dfs split printed:\n%s", printed)
	}

	ref := env.registry + "/split/llama:v1"
	build(t, env.buildkit, out, "-t", ref, "--push")
	px := startProxy(t, env.registry)
	img := remoteImage(t, px.addr+"/split/llama:v1"+tag)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i := range ls {
		entries, _ := readLayer(t, img, i)
		for name, e := range entries {
			if e.hdr.Typeflag == tar.TypeReg && strings.HasPrefix(name, "/model/") {
				files[strings.TrimPrefix(name, "/model/")] = e.data
			}
		}
	}
	var got []string
	for name := range files {
		got = append(got, name)
	}
	slices.Sort(got)
	want := []string{
		"config.json",
		"stage-1/model.safetensors.index.json", "stage-1/part-0.safetensors", "stage-1/part-1.safetensors",
		"tokenizer.json", "tokenizer/special.json",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("partition %s holds\n%v\nwant exactly\n%v", tag, got, want)
	}
	for name, data := range files {
		disk, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(disk, data) {
			t.Errorf("%s in the image differs from what split wrote (%v)", name, err)
		}
	}

	// The stage's tensors, by the index and by the files' headers.
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(files["stage-1/model.safetensors.index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var inFiles []string
	for _, part := range []string{"part-0.safetensors", "part-1.safetensors"} {
		data := files["stage-1/"+part]
		h, err := safetensors.ReadHeader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", part, err)
		}
		for _, x := range h.Tensors {
			if idx.WeightMap[x.Name] != part {
				t.Errorf("tensor %s is in %s, the index says %q", x.Name, part, idx.WeightMap[x.Name])
			}
			inFiles = append(inFiles, x.Name)
		}
	}
	slices.Sort(inFiles)
	var wantTensors []string
	for _, x := range splittest.Llama(6, 32) {
		if strings.HasPrefix(x.Name, "model.layers.2.") || strings.HasPrefix(x.Name, "model.layers.3.") {
			wantTensors = append(wantTensors, x.Name)
		}
	}
	slices.Sort(wantTensors)
	if !slices.Equal(inFiles, wantTensors) || len(idx.WeightMap) != len(wantTensors) {
		t.Fatalf("stage %d holds tensors\n%v\nwant the tensors of layers 2-3\n%v", stage, inFiles, wantTensors)
	}
}
