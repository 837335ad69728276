package split

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tdfs-kit/tdfs/safetensors"
)

// IndexName is the file that maps the tensors of a sharded checkpoint to
// its shards, and the per-stage index split writes.
const IndexName = "model.safetensors.index.json"

// maxIndexSize caps the index JSON: it lists names, not data.
const maxIndexSize = 64 << 20

// otherWeights are extensions of weight formats other than safetensors: a
// checkpoint folder often carries the same weights in them too, so they are
// left out of the "other files" row rather than copied whole.
var otherWeights = []string{".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".pkl", ".npz", ".ot"}

// Checkpoint is an open safetensors checkpoint: one file, or a folder with
// one file or shards named by model.safetensors.index.json.
type Checkpoint struct {
	// Dir is the checkpoint folder; empty when a single file was given.
	Dir    string
	Shards []*safetensors.File
	// Metadata is the union of the shards' __metadata__ (on a key the shards
	// disagree on, the first shard in name order wins).
	Metadata map[string]string
	// Others are the folder's other files and folders (config, tokenizer...),
	// by name, sorted: the last row of the field.
	Others []string
	// Skipped are the folder's entries left out, each with the reason.
	Skipped []string

	where map[string]location
}

type location struct {
	shard  int
	tensor safetensors.Tensor
}

// Tensors lists the tensors with their sizes, sorted by name.
func (c *Checkpoint) Tensors() []TensorSize {
	out := make([]TensorSize, 0, len(c.where))
	for name, l := range c.where {
		out = append(out, TensorSize{name, l.tensor.Size()})
	}
	slices.SortFunc(out, func(a, b TensorSize) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close closes the shards.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, s := range c.Shards {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Read opens a checkpoint and checks every shard's header against the
// index. No tensor bytes are read.
func Read(path string) (_ *Checkpoint, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{where: map[string]location{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if !st.IsDir() && filepath.Base(path) == IndexName {
		// The index stands for its folder.
		return Read(filepath.Dir(path))
	}
	if !st.IsDir() {
		if err := c.addShard(path, nil); err != nil {
			return nil, err
		}
		return c, nil
	}
	c.Dir = path
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".safetensors") {
			files = append(files, e.Name())
		}
	}
	indexPath := filepath.Join(path, IndexName)
	var shardNames []string
	var index map[string]string
	switch _, statErr := os.Stat(indexPath); {
	case statErr == nil:
		if index, err = readIndex(indexPath); err != nil {
			return nil, err
		}
		for _, s := range index {
			shardNames = append(shardNames, s)
		}
		slices.Sort(shardNames)
		shardNames = slices.Compact(shardNames)
	case !errors.Is(statErr, fs.ErrNotExist):
		return nil, statErr
	case len(files) == 1:
		shardNames = files
	case len(files) == 0:
		return nil, fmt.Errorf("%s: no .safetensors file and no %s", path, IndexName)
	default:
		return nil, fmt.Errorf("%s: %d .safetensors files but no %s to say which tensors each holds", path, len(files), IndexName)
	}
	for _, name := range shardNames {
		if err := c.addShard(filepath.Join(path, name), index); err != nil {
			return nil, err
		}
	}
	if index != nil {
		for _, name := range sortedKeys(index) {
			if _, ok := c.where[name]; !ok {
				return nil, fmt.Errorf("%s: tensor %q is in shard %q by the index, but that shard has no such tensor", indexPath, name, index[name])
			}
		}
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case slices.Contains(shardNames, name) || (index != nil && name == IndexName):
		case strings.HasPrefix(name, "."):
			c.Skipped = append(c.Skipped, name+" (hidden)")
		case strings.HasSuffix(name, ".safetensors"):
			c.Skipped = append(c.Skipped, name+" (safetensors file the index does not name)")
		case strings.HasSuffix(name, ".index.json") || slices.Contains(otherWeights, filepath.Ext(name)):
			c.Skipped = append(c.Skipped, name+" (weights in another format)")
		case name == "2dfs.json" || isStageName(name):
			return nil, fmt.Errorf("%s: the checkpoint folder has %q, a name split writes itself; move it away", path, name)
		default:
			st, err := os.Stat(filepath.Join(path, name)) // follows links, as in a Hugging Face cache snapshot
			if err != nil {
				return nil, err
			}
			if !st.Mode().IsRegular() && !st.IsDir() {
				c.Skipped = append(c.Skipped, name+" (not a file or folder)")
				continue
			}
			c.Others = append(c.Others, name)
		}
	}
	return c, nil
}

func isStageName(name string) bool {
	rest, ok := strings.CutPrefix(name, "stage-")
	return ok && rest != "" && strings.Trim(rest, "0123456789") == ""
}

// addShard opens a shard and records its tensors. With an index, each of
// them must be listed in it, in this shard.
func (c *Checkpoint) addShard(path string, index map[string]string) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	c.Shards = append(c.Shards, f)
	base := filepath.Base(path)
	for _, t := range f.Tensors {
		if index != nil {
			switch in, ok := index[t.Name]; {
			case !ok:
				return fmt.Errorf("%s: holds tensor %q, which %s does not list", path, t.Name, IndexName)
			case in != base:
				return fmt.Errorf("%s: holds tensor %q, which %s puts in %q", path, t.Name, IndexName, in)
			}
		}
		if prev, dup := c.where[t.Name]; dup {
			return fmt.Errorf("%s: tensor %q is also in %s", path, t.Name, c.Shards[prev.shard].Path)
		}
		c.where[t.Name] = location{shard: len(c.Shards) - 1, tensor: t}
	}
	for k, v := range f.Metadata {
		if c.Metadata == nil {
			c.Metadata = map[string]string{}
		}
		if _, ok := c.Metadata[k]; !ok {
			c.Metadata[k] = v
		}
	}
	return nil
}

// readIndex reads a model.safetensors.index.json and checks that every
// shard it names is a plain file name in the same folder that exists.
func readIndex(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxIndexSize {
		return nil, fmt.Errorf("%s: %d bytes, over the %d byte limit for an index", path, st.Size(), maxIndexSize)
	}
	var doc struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.NewDecoder(f).Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: not a safetensors index: %w", path, err)
	}
	if len(doc.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: weight_map is missing or empty", path)
	}
	dir := filepath.Dir(path)
	checked := map[string]bool{}
	for _, name := range sortedKeys(doc.WeightMap) {
		shard := doc.WeightMap[name]
		if checked[shard] {
			continue
		}
		if shard == "" || shard != filepath.Base(shard) || shard == "." || shard == ".." || strings.ContainsRune(shard, '\\') {
			return nil, fmt.Errorf("%s: tensor %q is in shard %q, which is not a file name in the checkpoint folder", path, name, shard)
		}
		if !strings.HasSuffix(shard, ".safetensors") {
			return nil, fmt.Errorf("%s: tensor %q is in shard %q, which is not a .safetensors file", path, name, shard)
		}
		if _, err := os.Stat(filepath.Join(dir, shard)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: tensor %q is in shard %q, which is missing from %s", path, name, shard, dir)
			}
			return nil, err
		}
		checked[shard] = true
	}
	return doc.WeightMap, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
