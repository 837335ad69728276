package split

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/safetensors"
)

// DefaultRoot is the folder in the image the field's files go under.
const DefaultRoot = "/model"

// copyBufferSize is the one buffer tensor bytes go through: peak memory does
// not grow with the checkpoint.
const copyBufferSize = 1 << 20

// WriteOptions say where and how to write the field.
type WriteOptions struct {
	// Out is the folder to create; it must not exist or be empty.
	Out string
	// Root is the folder in the image (DefaultRoot when empty).
	Root string
	// Base is the descriptor's base image; empty means scratch.
	Base string
}

// Layout is what Write produced.
type Layout struct {
	Plan *Plan
	// Cols is the field's width: the number of parts per stage.
	Cols int
	// OtherRow is the row of the other files, or -1 when there are none.
	OtherRow int
	// Cells lists the written cells' paths relative to Out, by stage and column.
	Cells [][]string
}

// Tag is the partition tag suffix of stage s (see Plan.Tag).
func (l *Layout) Tag(s int) string { return l.Plan.Tag(s, l.Cols, l.OtherRow >= 0) }

// PartName is the file of stage s, part c, relative to the root.
func PartName(s, c int) string { return fmt.Sprintf("stage-%d/part-%d.safetensors", s, c) }

// Write writes the field plan describes: one safetensors file per cell,
// each stage's index beside its part 0, the checkpoint's other files, and a
// 2dfs.json. It writes into a temporary folder next to opt.Out and renames
// it at the end, so on any error (or a cancelled ctx) nothing is left.
func Write(ctx context.Context, c *Checkpoint, plan *Plan, opt WriteOptions) (_ *Layout, err error) {
	root := opt.Root
	if root == "" {
		root = DefaultRoot
	}
	if !path.IsAbs(root) || path.Clean(root) == "/" {
		return nil, fmt.Errorf("root %q must be an absolute folder other than /", root)
	}
	root = path.Clean(root)
	out, err := filepath.Abs(opt.Out)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty; split writes a new folder", out)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	l := &Layout{Plan: plan, OtherRow: -1}
	if len(plan.Stages) > 0 {
		l.Cols = len(plan.Stages[0].Parts)
	}
	buf := make([]byte, copyBufferSize)
	var allots []allotment
	for s, st := range plan.Stages {
		weightMap := map[string]string{}
		var row []string
		first := len(allots) // part 0's allotment: MakePlan deals to it first, so it is never empty
		for col, part := range st.Parts {
			if len(part) == 0 {
				row = append(row, "")
				continue
			}
			name := PartName(s, col)
			if err := writePart(ctx, c, filepath.Join(tmp, filepath.FromSlash(name)), part, buf); err != nil {
				return nil, err
			}
			for _, t := range part {
				weightMap[t] = path.Base(name)
			}
			row = append(row, name)
			allots = append(allots, allotment{Src: []string{name}, Row: s, Col: col})
		}
		index := fmt.Sprintf("stage-%d/%s", s, IndexName)
		if err := writeIndex(filepath.Join(tmp, filepath.FromSlash(index)), st.Bytes(), weightMap); err != nil {
			return nil, err
		}
		allots[first].Src = append(allots[first].Src, index)
		l.Cells = append(l.Cells, row)
	}
	if len(c.Others) > 0 {
		l.OtherRow = len(plan.Stages)
		a := allotment{Row: l.OtherRow, Col: 0}
		for _, name := range c.Others {
			if err := copyTree(ctx, filepath.Join(c.Dir, name), filepath.Join(tmp, name), buf); err != nil {
				return nil, err
			}
			a.Src = append(a.Src, name)
		}
		allots = append(allots, a)
	}
	desc, err := encodeDescriptor(opt.Base, root, allots)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, descriptor.DefaultFilenames[0]), desc, 0o644); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return nil, err
	}
	// os.Rename refuses to replace a directory, even an empty one; Remove
	// deletes only an empty one, which was checked above.
	if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return l, nil
}

// writePart streams the tensors of one cell into a new safetensors file.
func writePart(ctx context.Context, c *Checkpoint, dst string, names []string, buf []byte) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	inputs := make([]safetensors.Input, len(names))
	for i, name := range names {
		loc := c.where[name]
		shard := c.Shards[loc.shard]
		inputs[i] = safetensors.Input{
			Name: name, DType: loc.tensor.DType, Shape: loc.tensor.Shape,
			Data: &ctxReader{ctx: ctx, r: shard.Section(loc.tensor), file: shard.Path, tensor: name},
		}
	}
	if _, err := safetensors.Write(f, c.Metadata, inputs, buf); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return nil
}

// ctxReader stops a copy when ctx is done, and names the source of a read
// error: a shard that shrank or went bad since its header was read.
type ctxReader struct {
	ctx          context.Context
	r            io.Reader
	file, tensor string
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("reading tensor %q from %s: %w", r.tensor, r.file, err)
	}
	return n, err
}

// writeIndex writes a stage's model.safetensors.index.json, in the form
// loaders expect: total_size and the part each tensor is in.
func writeIndex(dst string, total int64, weightMap map[string]string) error {
	doc := map[string]any{
		"metadata":   map[string]int64{"total_size": total},
		"weight_map": weightMap,
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(dst, append(data, '\n'), 0o644)
}

// copyTree copies a file, or a folder recursively, following links (a
// Hugging Face cache snapshot is made of links).
func copyTree(ctx context.Context, src, dst string, buf []byte) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := copyTree(ctx, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), buf); err != nil {
				return err
			}
		}
		return nil
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file or folder", src)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	outF, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, st.Mode().Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(outF, &ctxReader{ctx: ctx, r: in, file: src}, buf); err != nil {
		outF.Close()
		return err
	}
	return outF.Close()
}

// allotment is one descriptor entry; dst is derived from src.
type allotment struct {
	Src      []string
	Row, Col int
}

// encodeDescriptor writes the 2dfs.json, one allotment a line, and checks
// it with the descriptor parser the build uses.
func encodeDescriptor(base, root string, allots []allotment) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	if base != "" {
		v, _ := json.Marshal(base)
		fmt.Fprintf(&b, "  \"base\": %s,\n", v)
	}
	b.WriteString("  \"allotments\": [")
	for i, a := range allots {
		dst := make([]string, len(a.Src))
		for j, s := range a.Src {
			dst[j] = path.Join(root, s)
		}
		src, _ := json.Marshal(a.Src)
		dj, _ := json.Marshal(dst)
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    {\"src\": %s, \"dst\": %s, \"row\": %d, \"col\": %d}", src, dj, a.Row, a.Col)
	}
	b.WriteString("\n  ]\n}\n")
	if _, err := descriptor.Parse(descriptor.DefaultFilenames[0], b.Bytes()); err != nil {
		return nil, fmt.Errorf("the descriptor split made does not parse (a bug): %w", err)
	}
	return b.Bytes(), nil
}
