package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/layout"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

type partitionFlags struct {
	registryFlags
	output   string
	layout   string
	platform string
}

func newPartitionCommand() *cobra.Command {
	var f partitionFlags
	cmd := &cobra.Command{
		Use:   "partition [flags] REF--r1.c1.r2.c2[--r1.c1.r2.c2...] (-o FILE.tar | --oci-layout DIR)",
		Short: "Write a partition of a field image as an OCI layout or OCI tar",
		Long: `Partition cuts the allotments a partition tag selects out of a field image,
ours or in the reference 2DFS format, and writes the result (base layers plus
the selected allotments) as an OCI image layout: a directory, or a tar that
'ctr images import' and 'docker load' read.

The selection is the suffix of the tag: rows r1..r2 and columns c1..c2,
inclusive; several rectangles are a union. REF is a registry reference or
oci-layout://PATH[:TAG].`,
		Example: `  2dfs partition localhost:5000/models/llm:v1--0.0.1.1 -o llm-part.tar
  2dfs partition --platform linux/arm64 registry.example.com/m:v1--2.0.2.3 --oci-layout ./out
  ctr images import llm-part.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPartition(cmd.Context(), f, args[0], cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.registryFlags.register(fl)
	fl.StringVarP(&f.output, "output", "o", "", "write an OCI layout tar to this file (- for stdout)")
	fl.StringVar(&f.layout, "oci-layout", "", "write into this OCI layout directory (created if needed)")
	fl.StringVar(&f.platform, "platform", "", "partition only this platform of a multi-platform image (os/arch[/variant])")
	return cmd
}

// partitionRef is a parsed REF--SEL argument.
type partitionRef struct {
	base     string // the reference to read, with the base tag
	fullName string // the partition's name, for index.json
	tag      string // the partition tag
	sel      field.Selection
}

func parsePartitionRef(ref string, f *registryFlags) (*partitionRef, error) {
	if path, tag, ok := layout.ParseRef(ref); ok {
		if tag == "" {
			return parseUntaggedLayoutRef(path)
		}
		base, sel, err := field.ParseTag(tag)
		if err != nil {
			return nil, err
		}
		return &partitionRef{base: layout.Scheme + path + ":" + base, tag: tag, sel: sel}, nil
	}
	r, err := name.ParseReference(ref, f.nameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: %w", ref, err)
	}
	t, ok := r.(name.Tag)
	if !ok || !strings.Contains(ref, field.SelectionSeparator) {
		return nil, fmt.Errorf("%q has no partition tag: want REF:TAG--r1.c1.r2.c2", ref)
	}
	base, sel, err := field.ParseTag(t.TagStr())
	if err != nil {
		return nil, err
	}
	return &partitionRef{base: t.Context().Tag(base).String(), fullName: t.Name(), tag: t.TagStr(), sel: sel}, nil
}

// parseUntaggedLayoutRef reads oci-layout://PATH--SEL: a partition of the
// only image of a layout that names none, such as the layouts the reference
// builder's `tdfs image export` writes. The selection is the trailing
// rectangle-shaped "--" pieces of PATH, read as in a tag.
func parseUntaggedLayoutRef(path string) (*partitionRef, error) {
	dir := path
	for field.IsPartitionTag(dir) {
		dir = dir[:strings.LastIndex(dir, field.SelectionSeparator)]
	}
	suffix := path[len(dir):]
	switch {
	case suffix == "":
		return nil, fmt.Errorf("%q has no partition selection: want %sPATH[:TAG]--r1.c1.r2.c2", layout.Scheme+path, layout.Scheme)
	case dir == "":
		return nil, fmt.Errorf("%q has no layout directory before the selection: want %sPATH[:TAG]--r1.c1.r2.c2", layout.Scheme+path, layout.Scheme)
	}
	// ParseTag wants a base tag; "_" stands in for the missing one.
	_, sel, err := field.ParseTag("_" + suffix)
	if te := (*field.TagError)(nil); errors.As(err, &te) {
		te.Tag = suffix
		if te.Part == "_"+suffix {
			te.Part = suffix
		}
	}
	if err != nil {
		return nil, err
	}
	return &partitionRef{base: layout.Scheme + dir + ":", sel: sel}, nil
}

func runPartition(ctx context.Context, f partitionFlags, ref string, log io.Writer) error {
	if (f.output == "") == (f.layout == "") {
		return errors.New("partition: give exactly one of -o FILE.tar and --oci-layout DIR")
	}
	pr, err := parsePartitionRef(ref, &f.registryFlags)
	if err != nil {
		return err
	}
	src, err := openStore(ctx, pr.base, &f.registryFlags)
	if err != nil {
		return err
	}
	part, err := image.Partition(ctx, src, "", pr.sel, f.platform)
	if err != nil {
		return err
	}

	var w *layout.Writer
	var out io.WriteCloser
	if f.layout != "" {
		w, err = layout.NewDir(f.layout)
	} else {
		out = os.Stdout
		if f.output != "-" {
			if out, err = os.Create(f.output); err != nil {
				return err
			}
		}
		w, err = layout.NewTar(out)
	}
	if err != nil {
		return err
	}
	if err := writePartition(ctx, w, src, part); err != nil {
		return err
	}
	if err := w.Finish(part.Descriptor(), pr.fullName, pr.tag); err != nil {
		return err
	}
	if out != nil && out != os.Stdout {
		if err := out.Close(); err != nil {
			return err
		}
	}
	for _, r := range part.Images {
		fmt.Fprintf(log, "partition %s of %s: %s, manifest %s\n", pr.sel, src, partitionHolds(r), r.ManifestDigest)
	}
	return nil
}

// partitionHolds says what a partition holds: its allotments when it has a
// field record, else (the reference builder's images carry no paths, so
// their partitions have no record) its layers, which are all we know.
func partitionHolds(r *partition.Result) string {
	if r.Record != nil {
		return plural(len(r.Record.Allotments), "allotment")
	}
	var m struct {
		Layers []json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(r.Manifest, &m); err != nil {
		return "unreadable manifest"
	}
	return plural(len(m.Layers), "layer") + ", no field record"
}

// writePartition writes the partitioned images' blobs and manifests, and an
// index's other entries (attestations it kept) as they are.
func writePartition(ctx context.Context, w *layout.Writer, src store, part *image.Partitioned) error {
	for _, r := range part.Images {
		var m ocispec.Manifest
		if err := json.Unmarshal(r.Manifest, &m); err != nil {
			return err
		}
		for _, l := range m.Layers {
			if err := w.Copy(ctx, src, l); err != nil {
				return err
			}
		}
		if err := w.Bytes(r.ConfigDigest, r.Config); err != nil {
			return err
		}
		if err := w.Bytes(r.ManifestDigest, r.Manifest); err != nil {
			return err
		}
	}
	index := part.Index
	if index == nil {
		return nil
	}
	var idx ocispec.Index
	if err := json.Unmarshal(index.Index, &idx); err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		if w.Written(d.Digest) {
			continue
		}
		if err := copyImage(ctx, w, src, d); err != nil {
			return err
		}
	}
	return w.Bytes(index.Digest, index.Index)
}

// copyImage copies an image manifest, its config and layers unchanged.
func copyImage(ctx context.Context, w *layout.Writer, src store, d ocispec.Descriptor) error {
	data, _, err := src.Manifest(ctx, d.Digest.String())
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	for _, l := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := w.Copy(ctx, src, l); err != nil {
			return err
		}
	}
	return w.Bytes(d.Digest, data)
}
