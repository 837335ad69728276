package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
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
	if path, tag, ok := parseLayoutRef(ref); ok {
		if tag == "" {
			return parseUntaggedLayoutRef(path)
		}
		base, sel, err := field.ParseTag(tag)
		if err != nil {
			return nil, err
		}
		return &partitionRef{base: layoutScheme + path + ":" + base, tag: tag, sel: sel}, nil
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
		return nil, fmt.Errorf("%q has no partition selection: want %sPATH[:TAG]--r1.c1.r2.c2", layoutScheme+path, layoutScheme)
	case dir == "":
		return nil, fmt.Errorf("%q has no layout directory before the selection: want %sPATH[:TAG]--r1.c1.r2.c2", layoutScheme+path, layoutScheme)
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
	return &partitionRef{base: layoutScheme + dir + ":", sel: sel}, nil
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
	root, rootType, err := src.root(ctx)
	if err != nil {
		return err
	}
	rootType = partition.MediaTypeOf(root, rootType)

	var (
		rootDesc ocispec.Descriptor
		results  []*partition.Result
		index    *partition.IndexResult
	)
	switch {
	case partition.IsIndex(rootType) && f.platform != "":
		child, err := pickPlatform(root, f.platform)
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		r, err := partitionChild(ctx, src, child, pr.sel)
		if err != nil {
			return err
		}
		results, rootDesc = []*partition.Result{r}, r.Descriptor()
	case partition.IsIndex(rootType):
		index, err = partition.Index(ctx, root, rootType, pr.sel, func(ctx context.Context, d ocispec.Descriptor) (*partition.Result, error) {
			return partitionChild(ctx, src, d, pr.sel)
		})
		if err != nil {
			return err
		}
		results, rootDesc = index.Children, index.Descriptor()
	case partition.IsManifest(rootType):
		r, err := partitionManifest(ctx, src, root, rootType, pr.sel)
		if err != nil {
			return err
		}
		results, rootDesc = []*partition.Result{r}, r.Descriptor()
	default:
		return fmt.Errorf("%s is a %q, not an image", src, rootType)
	}

	var w *layoutWriter
	var out io.WriteCloser
	if f.layout != "" {
		w, err = newLayoutDir(f.layout)
	} else {
		out = os.Stdout
		if f.output != "-" {
			if out, err = os.Create(f.output); err != nil {
				return err
			}
		}
		w, err = newLayoutTar(out)
	}
	if err != nil {
		return err
	}
	if err := writePartition(ctx, w, src, results, index); err != nil {
		return err
	}
	if err := w.finish(rootDesc, pr.fullName, pr.tag); err != nil {
		return err
	}
	if out != nil && out != os.Stdout {
		if err := out.Close(); err != nil {
			return err
		}
	}
	for _, r := range results {
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

// pickPlatform returns the image manifest of index for platform p.
func pickPlatform(index []byte, p string) (ocispec.Descriptor, error) {
	want, err := platforms.Parse(p)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	match := platforms.OnlyStrict(want)
	var idx ocispec.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("index: %w", err)
	}
	var seen []string
	for _, d := range idx.Manifests {
		if isAttestation(d) || !partition.IsManifest(d.MediaType) || d.Platform == nil {
			continue
		}
		seen = append(seen, platforms.Format(*d.Platform))
		if match.Match(*d.Platform) {
			return d, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image for platform %s (the index has %s)", p, strings.Join(seen, ", "))
}

func partitionChild(ctx context.Context, src store, d ocispec.Descriptor, sel field.Selection) (*partition.Result, error) {
	m, err := src.manifest(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	return partitionManifest(ctx, src, m, d.MediaType, sel)
}

// partitionManifest partitions one image manifest, ours or reference-format.
func partitionManifest(ctx context.Context, src store, manifest []byte, mediaType string, sel field.Selection) (*partition.Result, error) {
	return tdfs.PartitionImage(ctx, manifest, mediaType, sel, blobSource{src})
}

// blobSource adapts a store to tdfs.BlobSource.
type blobSource struct{ store }

func (b blobSource) Blob(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	limit := int64(partition.MaxConfigBytes)
	if d.MediaType == tdfs.MediaTypeField {
		limit = tdfs.MaxFieldBytes
	}
	return b.store.blob(ctx, d.Digest, limit)
}

func (b blobSource) Size(ctx context.Context, d digest.Digest) (int64, error) {
	return b.store.size(ctx, d)
}

// writePartition writes the partitioned images' blobs and manifests, and an
// index's other entries (attestations it kept) as they are.
func writePartition(ctx context.Context, w *layoutWriter, src store, results []*partition.Result, index *partition.IndexResult) error {
	for _, r := range results {
		var m ocispec.Manifest
		if err := json.Unmarshal(r.Manifest, &m); err != nil {
			return err
		}
		for _, l := range m.Layers {
			if err := w.copy(ctx, src, l); err != nil {
				return err
			}
		}
		if err := w.bytes(r.ConfigDigest, r.Config); err != nil {
			return err
		}
		if err := w.bytes(r.ManifestDigest, r.Manifest); err != nil {
			return err
		}
	}
	if index == nil {
		return nil
	}
	var idx ocispec.Index
	if err := json.Unmarshal(index.Index, &idx); err != nil {
		return err
	}
	for _, d := range idx.Manifests {
		if w.written[d.Digest] {
			continue
		}
		if err := copyImage(ctx, w, src, d); err != nil {
			return err
		}
	}
	return w.bytes(index.Digest, index.Index)
}

// copyImage copies an image manifest, its config and layers unchanged.
func copyImage(ctx context.Context, w *layoutWriter, src store, d ocispec.Descriptor) error {
	data, err := src.manifest(ctx, d.Digest)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	for _, l := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := w.copy(ctx, src, l); err != nil {
			return err
		}
	}
	return w.bytes(d.Digest, data)
}
