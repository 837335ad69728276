package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/split"
)

type splitFlags struct {
	out    string
	stages int
	cols   int
	base   string
	root   string
}

func newSplitCommand() *cobra.Command {
	var f splitFlags
	cmd := &cobra.Command{
		Use:   "split CHECKPOINT -o OUTDIR [--stages N] [--cols K]",
		Short: "Split a safetensors checkpoint into a field whose rows are pipeline stages",
		Long: `Split reads a safetensors checkpoint (one file, or a folder with one file or
shards and model.safetensors.index.json, or that index) and writes a build
context for '2dfs build': row k of the field is pipeline stage k, and the
worker of stage k pulls only its weights with the partition tag
--k.0.k.(K-1)--N.0.N.0.

  - Tensors are grouped by their layer index (model.layers.N., h.N., layers.N.,
    layer.N., blocks.N., block.N.) into --stages contiguous stages of about
    equal bytes (default: one stage per layer); the embeddings go with the
    first stage, the final norm and the head with the last. A tensor with no
    layer index that is neither is an error naming it.
  - --cols K deals each stage's tensors into K parts of about equal bytes.
  - Cell (k, c) is ROOT/stage-k/part-c.safetensors, a valid safetensors file
    carrying the checkpoint's __metadata__; ROOT/stage-k/model.safetensors.index.json
    (in cell (k, 0)) maps the stage's tensors to its parts.
  - Row N (N = the number of stages) holds the folder's other files and
    folders: config.json, tokenizer files... Hidden files and weights in other
    formats (.bin, .pt, .gguf...) are left out and listed.
  - OUTDIR/2dfs.json is the descriptor; on disk the files sit where they go
    in the image, under OUTDIR instead of ROOT.

Tensor bytes are streamed through one 1 MiB buffer and kept exactly (dtypes,
shapes, byte order); the same checkpoint always gives the same files. The
output is written into a temporary folder next to OUTDIR and renamed at the
end: on any error nothing is left. OUTDIR must not exist or be empty.`,
		Example: `  2dfs split ./llama-3-8b -o ./llama-field --stages 4 --cols 2
  2dfs build -t registry.example.com/models/llama:v1 --push ./llama-field
  # the worker of stage 1:
  ctr images pull proxy.example.com:5000/models/llama:v1--1.0.1.1--4.0.4.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.out == "" {
				return fmt.Errorf("-o OUTDIR is required")
			}
			return runSplit(cmd.Context(), f, args[0], cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output", "o", "", "folder to write the field's build context to (must not exist, or be empty)")
	fl.IntVar(&f.stages, "stages", 0, "number of pipeline stages (rows); 0: one per layer")
	fl.IntVar(&f.cols, "cols", 1, "parts per stage (columns), of about equal bytes")
	fl.StringVar(&f.base, "base", "", `base image of the field, written to 2dfs.json (default: none, "scratch": the image holds only the model)`)
	fl.StringVar(&f.root, "root", split.DefaultRoot, "folder in the image the files go under")
	return cmd
}

func runSplit(ctx context.Context, f splitFlags, src string, w io.Writer) error {
	if f.cols < 1 {
		return fmt.Errorf("--cols %d: need at least 1", f.cols)
	}
	if f.stages < 0 {
		return fmt.Errorf("--stages %d: need 1 or more, or 0 for one per layer", f.stages)
	}
	c, err := split.Read(src)
	if err != nil {
		return err
	}
	defer c.Close()
	plan, err := split.MakePlan(c.Tensors(), split.Options{Stages: f.stages, Cols: f.cols})
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	l, err := split.Write(ctx, c, plan, split.WriteOptions{Out: f.out, Root: f.root, Base: f.base})
	if err != nil {
		return err
	}
	var total int64
	for _, s := range plan.Stages {
		total += s.Bytes()
	}
	fmt.Fprintf(w, "%s: %d tensors, %s in %d file(s) -> %s: %d stages × %d columns\n",
		src, len(c.Tensors()), humanSize(total), len(c.Shards), f.out, len(plan.Stages), l.Cols)
	for k, s := range plan.Stages {
		layers := fmt.Sprintf("layer %d", s.FirstLayer)
		if s.LastLayer != s.FirstLayer {
			layers = fmt.Sprintf("layers %d-%d", s.FirstLayer, s.LastLayer)
		}
		fmt.Fprintf(w, "stage %d  %-14s %10s  pull TAG%s\n", k, layers, humanSize(s.Bytes()), l.Tag(k))
	}
	if l.OtherRow >= 0 {
		fmt.Fprintf(w, "row %d    other files: %s\n", l.OtherRow, strings.Join(c.Others, ", "))
	}
	for _, s := range c.Skipped {
		fmt.Fprintf(w, "left out: %s\n", s)
	}
	fmt.Fprintf(w, "build it with: 2dfs build -t REPO:TAG --push %s\n", f.out)
	return nil
}
