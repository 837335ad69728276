// Command gencheckpoint writes a synthetic llama-like safetensors checkpoint
// folder (random, incompressible bytes) for trying and measuring 2dfs split:
//
//	go run ./split/splittest/gencheckpoint -o /tmp/ckpt -mib 2048 -layers 32 -shards 4
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tdfs-kit/tdfs/safetensors"
	"github.com/tdfs-kit/tdfs/split/splittest"
)

func main() {
	out := flag.String("o", "", "folder to create")
	mib := flag.Int64("mib", 64, "approximate size of the weights in MiB")
	layers := flag.Int("layers", 32, "number of layers")
	shards := flag.Int("shards", 4, "number of shards (1: a single model.safetensors)")
	flag.Parse()
	if *out == "" || *layers < 1 || *shards < 1 {
		flag.Usage()
		os.Exit(2)
	}
	// Pick the hidden size whose model is closest to the asked size.
	hidden := int64(8)
	for size(*layers, hidden*2) <= *mib<<20 {
		hidden *= 2
	}
	for size(*layers, hidden+8) <= *mib<<20 {
		hidden += 8
	}
	ts := splittest.Llama(*layers, hidden)
	if err := splittest.WriteFolder(*out, ts, *shards); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d tensors, %d layers, hidden %d, %d bytes of weights in %d shard(s)\n", *out, len(ts), *layers, hidden, size(*layers, hidden), *shards)
}

func size(layers int, hidden int64) int64 {
	var n int64
	for _, t := range splittest.Llama(layers, hidden) {
		b, _ := safetensors.ByteSize(t.DType, t.Shape)
		n += b
	}
	return n
}
