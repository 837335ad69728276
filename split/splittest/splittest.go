// Package splittest makes safetensors checkpoints in code, for the tests
// and the benchmark of split: deterministic bytes, a few dtypes, one file or
// shards with an index, and the usual non-weight files.
package splittest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/tdfs-kit/tdfs/safetensors"
)

// Tensor is a tensor to generate.
type Tensor struct {
	Name  string
	DType safetensors.DType
	Shape []int64
}

// Llama lists the tensors of a small llama-like model: embeddings (F16),
// layers of attention and MLP weights (BF16), norms (F32), a position id
// buffer (I64) in layer 0, final norm and head. hidden scales every tensor.
func Llama(layers int, hidden int64) []Tensor {
	ts := []Tensor{{"model.embed_tokens.weight", "F16", []int64{4 * hidden, hidden}}}
	for l := range layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			Tensor{p + "self_attn.q_proj.weight", "BF16", []int64{hidden, hidden}},
			Tensor{p + "self_attn.k_proj.weight", "BF16", []int64{hidden, hidden}},
			Tensor{p + "mlp.up_proj.weight", "BF16", []int64{2 * hidden, hidden}},
			Tensor{p + "mlp.down_proj.weight", "BF16", []int64{hidden, 2 * hidden}},
			Tensor{p + "input_layernorm.weight", "F32", []int64{hidden}},
		)
		if l == 0 {
			ts = append(ts, Tensor{p + "self_attn.position_ids", "I64", []int64{1, hidden}})
		}
	}
	return append(ts,
		Tensor{"model.norm.weight", "F32", []int64{hidden}},
		Tensor{"lm_head.weight", "F16", []int64{4 * hidden, hidden}},
	)
}

// Data is the deterministic content of a tensor: ChaCha8 keyed by its name.
func Data(name string, size int64) io.Reader {
	h := fnv.New64a()
	h.Write([]byte(name))
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], h.Sum64())
	return io.LimitReader(rand.NewChaCha8(seed), size)
}

// Metadata is the __metadata__ the generated files carry.
var Metadata = map[string]string{"format": "pt", "generator": "splittest"}

// WriteFile writes ts into one safetensors file.
func WriteFile(path string, ts []Tensor) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	inputs := make([]safetensors.Input, len(ts))
	for i, t := range ts {
		size, err := safetensors.ByteSize(t.DType, t.Shape)
		if err != nil {
			f.Close()
			return err
		}
		inputs[i] = safetensors.Input{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: Data(t.Name, size)}
	}
	if _, err := safetensors.Write(f, Metadata, inputs, make([]byte, 1<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ShardName is the Hugging Face name of shard i (from 0) of n.
func ShardName(i, n int) string { return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n) }

// WriteFolder writes a checkpoint folder: ts dealt in order into n shards
// (one model.safetensors when n is 1) with model.safetensors.index.json,
// plus config.json, tokenizer.json and a tokenizer/ folder.
func WriteFolder(dir string, ts []Tensor, n int) error {
	if err := os.MkdirAll(filepath.Join(dir, "tokenizer"), 0o755); err != nil {
		return err
	}
	for name, data := range map[string]string{
		"config.json":            `{"model_type": "llama"}` + "\n",
		"tokenizer.json":         `{"version": "1.0"}` + "\n",
		"tokenizer/special.json": `{"bos": "<s>"}` + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	if n == 1 {
		return WriteFile(filepath.Join(dir, "model.safetensors"), ts)
	}
	weightMap := map[string]string{}
	per := (len(ts) + n - 1) / n
	for i := range n {
		part := ts[min(i*per, len(ts)):min((i+1)*per, len(ts))]
		for _, t := range part {
			weightMap[t.Name] = ShardName(i, n)
		}
		if err := WriteFile(filepath.Join(dir, ShardName(i, n)), part); err != nil {
			return err
		}
	}
	idx, _ := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": weightMap}, "", "  ")
	return os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644)
}
