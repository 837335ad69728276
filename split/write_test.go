package split

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/safetensors"
	"github.com/tdfs-kit/tdfs/split/splittest"
)

// run is what `2dfs split` does.
func run(ctx context.Context, src, out string, opt Options) (*Layout, error) {
	c, err := Read(src)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	plan, err := MakePlan(c.Tensors(), opt)
	if err != nil {
		return nil, err
	}
	return Write(ctx, c, plan, WriteOptions{Out: out})
}

type sourceTensor struct {
	t    safetensors.Tensor
	data []byte
}

// sourceTensors reads every tensor of a checkpoint into memory (tests only).
func sourceTensors(t *testing.T, src string) (map[string]sourceTensor, map[string]string) {
	t.Helper()
	c, err := Read(src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]sourceTensor{}
	for _, s := range c.Shards {
		for _, x := range s.Tensors {
			b, err := io.ReadAll(s.Section(x))
			if err != nil {
				t.Fatal(err)
			}
			out[x.Name] = sourceTensor{x, b}
		}
	}
	return out, c.Metadata
}

// checkLayout checks that every source tensor is in exactly one cell with
// the same dtype, shape and bytes, that each stage index maps its tensors to
// their parts, and that the descriptor lists every cell.
func checkLayout(t *testing.T, src, out string, l *Layout) {
	t.Helper()
	want, meta := sourceTensors(t, src)
	found := map[string]string{}
	for s, row := range l.Cells {
		var idx struct {
			Metadata  map[string]int64  `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}
		data, err := os.ReadFile(filepath.Join(out, "stage-"+itoa(s), IndexName))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatal(err)
		}
		stageTensors := map[string]string{}
		var total int64
		for c, cell := range row {
			if cell == "" {
				continue
			}
			f, err := safetensors.Open(filepath.Join(out, cell))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Metadata, meta) {
				t.Errorf("%s: metadata %v, want %v", cell, f.Metadata, meta)
			}
			for _, x := range f.Tensors {
				if prev, dup := found[x.Name]; dup {
					t.Errorf("tensor %s in %s and %s", x.Name, prev, cell)
				}
				found[x.Name] = cell
				stageTensors[x.Name] = filepath.Base(cell)
				w, ok := want[x.Name]
				if !ok {
					t.Errorf("%s: tensor %s not in the checkpoint", cell, x.Name)
					continue
				}
				got, _ := io.ReadAll(f.Section(x))
				if x.DType != w.t.DType || !slices.Equal(x.Shape, w.t.Shape) || !bytes.Equal(got, w.data) {
					t.Errorf("%s: tensor %s is %s %v (%d bytes), want %s %v (%d bytes) with the same bytes", cell, x.Name, x.DType, x.Shape, len(got), w.t.DType, w.t.Shape, len(w.data))
				}
				total += x.Size()
			}
			f.Close()
			if !slices.Equal(l.Plan.Stages[s].Parts[c], names(f.Tensors)) {
				t.Errorf("%s holds %v, the plan says %v", cell, names(f.Tensors), l.Plan.Stages[s].Parts[c])
			}
		}
		if !reflect.DeepEqual(idx.WeightMap, stageTensors) || idx.Metadata["total_size"] != total {
			t.Errorf("stage %d index %s\nwant weight_map %v total_size %d", s, data, stageTensors, total)
		}
	}
	if len(found) != len(want) {
		t.Errorf("%d tensors in the cells, %d in the checkpoint", len(found), len(want))
	}
	d, err := os.ReadFile(filepath.Join(out, "2dfs.json"))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := descriptor.Parse("2dfs.json", d)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range desc.Allotments {
		for i, s := range a.Src {
			if _, err := os.Stat(filepath.Join(out, s)); err != nil {
				t.Errorf("allotment %s src %s: %v", a.Cell, s, err)
			}
			if a.Dst[i] != "/model/"+s {
				t.Errorf("allotment %s: %s goes to %s", a.Cell, s, a.Dst[i])
			}
		}
	}
}

func names(ts []safetensors.Tensor) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	slices.Sort(out)
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSplitShardedFolder(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ckpt")
	if err := splittest.WriteFolder(src, splittest.Llama(5, 16), 2); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "field")
	l, err := run(context.Background(), src, out, Options{Stages: 3, Cols: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, src, out, l)
	// The index file names its folder just as well.
	viaIndex := filepath.Join(t.TempDir(), "field")
	if _, err := run(context.Background(), filepath.Join(src, IndexName), viaIndex, Options{Stages: 3, Cols: 2}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tree(t, out), tree(t, viaIndex)) {
		t.Fatal("splitting the index file gave another field than splitting its folder")
	}
	if l.OtherRow != 3 || l.Tag(1) != "--1.0.1.1--3.0.3.0" {
		t.Fatalf("other row %d, tag of stage 1 %s", l.OtherRow, l.Tag(1))
	}
	for _, name := range []string{"config.json", "tokenizer.json", "tokenizer/special.json"} {
		a, _ := os.ReadFile(filepath.Join(src, name))
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s not copied: %v", name, err)
		}
	}
	d, _ := os.ReadFile(filepath.Join(out, "2dfs.json"))
	desc, _ := descriptor.Parse("2dfs.json", d)
	last := desc.Allotments[len(desc.Allotments)-1]
	if last.Cell.Row != 3 || last.Cell.Col != 0 || !slices.Equal(last.Src, []string{"config.json", "tokenizer", "tokenizer.json"}) {
		t.Fatalf("other files allotment %+v", last)
	}
	if first := desc.Allotments[0]; !slices.Equal(first.Src, []string{"stage-0/part-0.safetensors", "stage-0/" + IndexName}) {
		t.Fatalf("first allotment %+v", first)
	}
	if desc.Base != "" {
		t.Fatalf("base %q, want none (scratch)", desc.Base)
	}
	noLeftovers(t, out)
}

func TestSplitSingleFileDefaults(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "m.safetensors")
	if err := splittest.WriteFile(src, splittest.Llama(3, 8)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	l, err := run(context.Background(), src, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, src, out, l)
	if len(l.Cells) != 3 || l.OtherRow != -1 || l.Tag(2) != "--2.0.2.0" {
		t.Fatalf("%d stages, other row %d, tag %s", len(l.Cells), l.OtherRow, l.Tag(2))
	}
}

func TestSplitDeterministic(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ckpt")
	if err := splittest.WriteFolder(src, splittest.Llama(4, 12), 3); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, out := range []string{a, b} {
		if _, err := run(context.Background(), src, out, Options{Stages: 2, Cols: 3}); err != nil {
			t.Fatal(err)
		}
	}
	fa, fb := tree(t, a), tree(t, b)
	if len(fa) < 10 || !reflect.DeepEqual(fa, fb) {
		t.Fatalf("two splits differ (%d and %d files)", len(fa), len(fb))
	}
}

func tree(t *testing.T, root string) map[string][]byte {
	out := map[string][]byte{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			out[rel] = b
		}
		return nil
	})
	return out
}

// noLeftovers checks that no temporary folder is left next to out.
func noLeftovers(t *testing.T, out string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// raw writes a safetensors file from a header and data as given.
func raw(t *testing.T, path, header string, data []byte) {
	t.Helper()
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(append(b, header...), data...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSplitBadInputs(t *testing.T) {
	sharded := func(t *testing.T) string {
		src := filepath.Join(t.TempDir(), "ckpt")
		if err := splittest.WriteFolder(src, splittest.Llama(4, 8), 2); err != nil {
			t.Fatal(err)
		}
		return src
	}
	shard2 := splittest.ShardName(1, 2)
	for _, c := range []struct {
		name  string
		setup func(t *testing.T) string
		want  []string
	}{
		{"truncated shard", func(t *testing.T) string {
			src := sharded(t)
			p := filepath.Join(src, shard2)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-3)
			return src
		}, []string{shard2 + `: tensor "model.layers.3.`, "run past the end of the data section", "truncated file?"}},
		{"header length past the end", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "m.safetensors")
			os.WriteFile(p, append(binary.LittleEndian.AppendUint64(nil, 5000), `{"a":1}`...), 0o644)
			return p
		}, []string{"m.safetensors: header length 5000 runs past the end of the file"}},
		{"overlapping offsets", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "m.safetensors")
			raw(t, p, `{"h.0.a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h.0.b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}}`, make([]byte, 10))
			return p
		}, []string{`m.safetensors: tensor "h.0.b": data_offsets [6, 10] overlap those of tensor "h.0.a"`}},
		{"gap", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "m.safetensors")
			raw(t, p, `{"h.0.a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h.0.b":{"dtype":"I64","shape":[1],"data_offsets":[12,20]}}`, make([]byte, 20))
			return p
		}, []string{`m.safetensors: tensor "h.0.b": data begins at 12, leaving a gap after tensor "h.0.a"`}},
		{"index names a missing shard", func(t *testing.T) string {
			src := sharded(t)
			os.Remove(filepath.Join(src, shard2))
			return src
		}, []string{IndexName + `: tensor "`, `is in shard "` + shard2 + `", which is missing from`}},
		{"index misses a tensor", func(t *testing.T) string {
			src := sharded(t)
			idx := filepath.Join(src, IndexName)
			var doc map[string]map[string]any
			b, _ := os.ReadFile(idx)
			json.Unmarshal(b, &doc)
			delete(doc["weight_map"], "lm_head.weight")
			b, _ = json.Marshal(doc)
			os.WriteFile(idx, b, 0o644)
			return src
		}, []string{shard2 + `: holds tensor "lm_head.weight", which ` + IndexName + " does not list"}},
		{"no layer index", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "m.safetensors")
			raw(t, p, `{"h.0.a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"rotary.inv_freq":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, make([]byte, 4))
			return p
		}, []string{`tensor "rotary.inv_freq" has no layer index`}},
		{"several files, no index", func(t *testing.T) string {
			src := sharded(t)
			os.Remove(filepath.Join(src, IndexName))
			return src
		}, []string{"2 .safetensors files but no " + IndexName}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := c.setup(t)
			out := filepath.Join(t.TempDir(), "field")
			_, err := run(context.Background(), src, out, Options{Stages: 2})
			if err == nil {
				t.Fatal("split succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Errorf("%s exists after the error", out)
			}
			noLeftovers(t, out)
		})
	}
}

// A shard that loses bytes between reading its header and copying its
// tensors fails the copy midway: the error names the shard and tensor, and
// the cells already written are removed.
func TestSplitFailureMidwayLeavesNothing(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ckpt")
	if err := splittest.WriteFolder(src, splittest.Llama(4, 8), 2); err != nil {
		t.Fatal(err)
	}
	c, err := Read(src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	plan, err := MakePlan(c.Tensors(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(src, splittest.ShardName(1, 2))
	st, _ := os.Stat(p)
	os.Truncate(p, st.Size()-100)
	out := filepath.Join(t.TempDir(), "field")
	_, err = Write(context.Background(), c, plan, WriteOptions{Out: out})
	if err == nil || !strings.Contains(err.Error(), "source truncated?") || !strings.Contains(err.Error(), "stage-3/part-0.safetensors") {
		t.Fatalf("err = %v", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("%s exists after the error", out)
	}
	noLeftovers(t, out)

	// A cancelled split stops and leaves nothing either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, c, plan, WriteOptions{Out: out}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancelled: err = %v", err)
	}
	noLeftovers(t, out)
}

func TestSplitRefusesNonEmptyOut(t *testing.T) {
	src := filepath.Join(t.TempDir(), "m.safetensors")
	splittest.WriteFile(src, splittest.Llama(2, 4))
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644)
	if _, err := run(context.Background(), src, out, Options{}); err == nil || !strings.Contains(err.Error(), "exists and is not empty") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep")); string(b) != "x" {
		t.Fatal("existing file touched")
	}
	// An empty folder is fine: it is replaced.
	empty := t.TempDir()
	if _, err := run(context.Background(), src, empty, Options{}); err != nil {
		t.Fatal(err)
	}
}

// More columns than a stage has tensors leaves the last cells of the row
// empty: no file, no allotment; the index stays with part 0.
func TestSplitEmptyCells(t *testing.T) {
	src := filepath.Join(t.TempDir(), "m.safetensors")
	if err := splittest.WriteFile(src, splittest.Llama(2, 4)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "field")
	l, err := run(context.Background(), src, out, Options{Cols: 9})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, src, out, l)
	// Stage 0: the embeddings and layer 0's 6 tensors; stage 1: layer 1's 5,
	// the final norm and the head. 7 tensors each, in 9 columns.
	for s, row := range l.Cells {
		if len(row) != 9 || row[0] != "stage-"+itoa(s)+"/part-0.safetensors" || row[6] == "" || row[7] != "" || row[8] != "" {
			t.Fatalf("stage %d cells %q", s, row)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "stage-1/part-7.safetensors")); !os.IsNotExist(err) {
		t.Fatalf("empty cell written: %v", err)
	}
	d, _ := os.ReadFile(filepath.Join(out, "2dfs.json"))
	desc, _ := descriptor.Parse("2dfs.json", d)
	if len(desc.Allotments) != 7+7 {
		t.Fatalf("%d allotments, want 14", len(desc.Allotments))
	}
	if l.Tag(1) != "--1.0.1.8" {
		t.Fatalf("tag %s", l.Tag(1))
	}
}
