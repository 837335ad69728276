package split

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tdfs-kit/tdfs/safetensors"
	"github.com/tdfs-kit/tdfs/split/splittest"
)

// BenchmarkSplit splits a generated checkpoint of TDFS_SPLIT_BENCH_MIB MiB
// (default 64) in 4 shards into 4 stages × 2 columns; MB/s is of weights.
// docs/benchmarks.md compares the command with cp on 2 GiB.
func BenchmarkSplit(b *testing.B) {
	mib := int64(64)
	if v, err := strconv.ParseInt(os.Getenv("TDFS_SPLIT_BENCH_MIB"), 10, 64); err == nil && v > 0 {
		mib = v
	}
	hidden := int64(8)
	for weights(32, hidden+8) <= mib<<20 {
		hidden += 8
	}
	src := filepath.Join(b.TempDir(), "ckpt")
	if err := splittest.WriteFolder(src, splittest.Llama(32, hidden), 4); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(weights(32, hidden))
	dir := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		out := filepath.Join(dir, strconv.Itoa(i))
		if _, err := run(context.Background(), src, out, Options{Stages: 4, Cols: 2}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}

func weights(layers int, hidden int64) int64 {
	var n int64
	for _, t := range splittest.Llama(layers, hidden) {
		s, _ := safetensors.ByteSize(t.DType, t.Shape)
		n += s
	}
	return n
}
