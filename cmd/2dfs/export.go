package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/layout"
	exremote "github.com/tdfs-kit/tdfs/exporter/remote"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
)

// formatTDFS names the reference 2DFS format on the command line, after the
// reference builder's binary.
const formatTDFS = "tdfs"

type exportFlags struct {
	registryFlags
	format string
	name   string
}

func newExportCommand() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export --format tdfs [flags] SRC DST",
		Short: "Convert a field image to the reference 2DFS format",
		Long: `Export converts one of our field images to the format of the reference 2DFS
tools (the tdfs builder and the 2DFS registry), see docs/reference-format.md.

Only manifests and configs change, and a field blob is added: the layer blobs
are the same. Registry to registry, they are mounted when SRC and DST are on
the same registry and copied otherwise; nothing is decompressed. Every
platform of a multi-platform image is converted; the result is always an OCI
index, annotated 2dfs.image.name.

SRC and DST are registry references or oci-layout://PATH[:TAG].`,
		Example: `  2dfs export --format tdfs localhost:5000/models/llm:v1 localhost:5000/models/llm:v1-tdfs
  2dfs export --format tdfs registry.example.com/m:v1 oci-layout://./m-tdfs:v1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd.Context(), f, args[0], args[1], cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.registryFlags.register(fl)
	fl.StringVar(&f.format, "format", "", "output format: tdfs (the reference 2DFS format)")
	fl.StringVar(&f.name, "name", "", "value of the 2dfs.image.name annotation (default: DST's name, or SRC's for a layout)")
	return cmd
}

func runExport(ctx context.Context, f exportFlags, srcRef, dstRef string, log io.Writer) error {
	if f.format != formatTDFS {
		return fmt.Errorf("export: --format must be %q (the reference 2DFS format), got %q", formatTDFS, f.format)
	}
	src, err := openStore(ctx, srcRef, &f.registryFlags)
	if err != nil {
		return err
	}
	layoutPath, layoutTag, toLayout := layout.ParseRef(dstRef)
	var dst name.Reference
	imageName := f.name
	if !toLayout {
		if dst, err = name.ParseReference(dstRef, f.nameOptions()...); err != nil {
			return fmt.Errorf("%q is not an image reference: %w", dstRef, err)
		}
		if imageName == "" {
			imageName = dst.Name()
		}
	} else if imageName == "" {
		imageName = src.String()
	}

	ex, err := convertImage(ctx, src, imageName)
	if err != nil {
		return err
	}
	if toLayout {
		w, err := layout.NewDir(layoutPath)
		if err != nil {
			return err
		}
		if err := writeExportLayout(ctx, w, src, ex); err != nil {
			return err
		}
		if err := w.Finish(ex.Index.Descriptor(), "", layoutTag); err != nil {
			return err
		}
	} else if err := pushExport(ctx, f, src, dst, ex); err != nil {
		return err
	}
	fmt.Fprintf(log, "exported %s as %s (%s, %d platforms)\n", src, dstRef, ex.Index.Digest, len(ex.Index.Children))
	return nil
}

// convertImage converts src's image (an index or a single manifest).
func convertImage(ctx context.Context, src store, imageName string) (*image.Converted, error) {
	ex, err := image.Convert(ctx, src, "", imageName)
	if errors.Is(err, tdfs.ErrNotGzip) {
		err = fmt.Errorf("%w; rebuild with 2dfs build --compression gzip", err)
	}
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", src, err)
	}
	return ex, nil
}

// layersOf returns every layer blob of our manifest: the base layers and
// the allotments, which the converted image references from its field.
func layersOf(manifest []byte) ([]ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, err
	}
	return m.Layers, nil
}

func writeExportLayout(ctx context.Context, w *layout.Writer, src store, ex *image.Converted) error {
	for _, img := range ex.Index.Children {
		layers, err := layersOf(ex.Sources[img.Source])
		if err != nil {
			return err
		}
		for _, l := range layers {
			if err := w.Copy(ctx, src, l); err != nil {
				return err
			}
		}
		for _, b := range []struct {
			d    digest.Digest
			data []byte
		}{{img.ConfigDigest, img.Config}, {img.FieldDigest, img.FieldBlob}, {img.ManifestDigest, img.Manifest}} {
			if err := w.Bytes(b.d, b.data); err != nil {
				return err
			}
		}
	}
	return w.Bytes(ex.Index.Digest, ex.Index.Index)
}

// pushExport writes the converted image to a registry: layer blobs by
// mount or copy (remote.WriteLayer skips blobs already there), then the
// config and field blobs, the platform manifests by digest, the index by
// DST's tag or digest.
func pushExport(ctx context.Context, f exportFlags, src store, dst name.Reference, ex *image.Converted) error {
	opts := f.remoteOptions(ctx)
	repo := dst.Context()
	for _, img := range ex.Index.Children {
		layers, err := layersOf(ex.Sources[img.Source])
		if err != nil {
			return err
		}
		for _, l := range layers {
			layer, err := sourceLayer(ctx, src, l)
			if err != nil {
				return err
			}
			if err := remote.WriteLayer(repo, layer, opts...); err != nil {
				return fmt.Errorf("copy layer %s to %s: %w", l.Digest, repo.Name(), err)
			}
		}
		for _, b := range []struct {
			data []byte
			mt   string
		}{{img.Config, ocispec.MediaTypeImageConfig}, {img.FieldBlob, tdfs.MediaTypeField}} {
			if err := remote.WriteLayer(repo, static.NewLayer(b.data, types.MediaType(b.mt)), opts...); err != nil {
				return fmt.Errorf("push blob to %s: %w", repo.Name(), err)
			}
		}
		if err := remote.Put(repo.Digest(img.ManifestDigest.String()), rawManifest{img.Manifest, ocispec.MediaTypeImageManifest}, opts...); err != nil {
			return fmt.Errorf("push manifest %s: %w", img.ManifestDigest, err)
		}
	}
	if err := remote.Put(dst, rawManifest{ex.Index.Index, ocispec.MediaTypeImageIndex}, opts...); err != nil {
		return fmt.Errorf("push index to %s: %w", dst.Name(), err)
	}
	return nil
}

// sourceLayer is a layer blob of src for remote.WriteLayer: a mountable
// remote layer for a registry source, a streamed file for a layout.
func sourceLayer(ctx context.Context, src store, l ocispec.Descriptor) (v1.Layer, error) {
	if rs, ok := src.(*exremote.Source); ok {
		return rs.Layer(l.Digest)
	}
	return partial.CompressedToLayer(&storeBlob{ctx: ctx, src: src, desc: l})
}

// storeBlob is a compressed layer read from a store.
type storeBlob struct {
	ctx  context.Context
	src  store
	desc ocispec.Descriptor
}

func (b *storeBlob) Digest() (v1.Hash, error) { return v1.NewHash(b.desc.Digest.String()) }
func (b *storeBlob) Size() (int64, error)     { return b.desc.Size, nil }
func (b *storeBlob) MediaType() (types.MediaType, error) {
	return types.MediaType(b.desc.MediaType), nil
}
func (b *storeBlob) Compressed() (io.ReadCloser, error) { return b.src.Open(b.ctx, b.desc.Digest) }
