package image

import (
	"context"
	"errors"
	"fmt"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
)

// ErrReference is returned when converting an image that already is in the
// reference format.
var ErrReference = errors.New("already in the reference format")

// Converted is one of our images converted to the reference format: always
// an index, and per platform the manifest it came from (whose layers the
// converted image shares).
type Converted struct {
	Index *tdfs.IndexImage
	// Sources are our manifests, by digest (tdfs.Image.Source).
	Sources map[digest.Digest][]byte
}

// Convert converts the image ref names in src (an index or a single
// manifest) to the reference format, naming it name (the
// 2dfs.image.name annotation). Only manifests and configs are read.
func Convert(ctx context.Context, src Source, ref, name string) (*Converted, error) {
	data, mediaType, err := root(ctx, src, ref)
	if err != nil {
		return nil, err
	}
	out := &Converted{Sources: map[digest.Digest][]byte{}}
	var mu sync.Mutex
	convert := func(ctx context.Context, m []byte, mediaType string) (*tdfs.Image, error) {
		img, err := convertManifest(ctx, src, m, mediaType)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		out.Sources[img.Source] = m
		mu.Unlock()
		return img, nil
	}
	switch {
	case partition.IsIndex(mediaType):
		entries, err := children(data, false, partition.DefaultLimits)
		if err != nil {
			return nil, err
		}
		done, err := eachChild(ctx, src, entries, func(ctx context.Context, m []byte, d ocispec.Descriptor) (*tdfs.Image, error) {
			return convert(ctx, m, d.MediaType)
		})
		if err != nil {
			return nil, err
		}
		if out.Index, err = tdfs.FromIndex(data, mediaType, name, done); err != nil {
			return nil, err
		}
	case partition.IsManifest(mediaType):
		img, err := convert(ctx, data, mediaType)
		if err != nil {
			return nil, err
		}
		out.Index = tdfs.WrapIndex(name, img)
	default:
		return nil, notAnImage(mediaType)
	}
	return out, nil
}

// convertManifest converts one of our image manifests.
func convertManifest(ctx context.Context, src Source, manifest []byte, mediaType string) (*tdfs.Image, error) {
	if tdfs.IsReference(manifest) {
		return nil, ErrReference
	}
	cd, err := partition.ConfigOf(manifest)
	if err != nil {
		return nil, err
	}
	config, err := src.Blob(ctx, cd, partition.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return tdfs.FromImage(manifest, mediaType, config)
}
