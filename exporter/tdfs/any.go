package tdfs

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

// BlobSource is the I/O PartitionImage needs from the image's repository;
// the registry proxy and the CLI implement it over their own clients.
type BlobSource interface {
	// Blob returns a small blob (a config, a field blob). The content is
	// checked against desc by PartitionImage; desc.Size is within the
	// package's caps, so a source may refuse larger blobs.
	Blob(ctx context.Context, desc ocispec.Descriptor) ([]byte, error)
	// Size returns a blob's size (a HEAD request, a stat); for a missing
	// blob, an error that says so.
	Size(ctx context.Context, d digest.Digest) (int64, error)
}

// PartitionImage partitions one image manifest in either format: ours with
// exporter/partition.Image, a reference-format one with Partition. It is
// the single entry point for a caller that does not care which it has,
// e.g. as the ChildFunc of partition.Index.
func PartitionImage(ctx context.Context, manifest []byte, mediaType string, sel field.Selection, src BlobSource) (*partition.Result, error) {
	if !IsReference(manifest) {
		cd, err := partition.ConfigOf(manifest)
		if err != nil {
			return nil, fmt.Errorf("partition: %w", err)
		}
		config, err := src.Blob(ctx, cd)
		if err != nil {
			return nil, fmt.Errorf("partition: config: %w", err)
		}
		return partition.Image(manifest, mediaType, config, sel)
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	config, err := src.Blob(ctx, m.Config)
	if err != nil {
		return nil, fmt.Errorf("partition: config: %w", err)
	}
	fieldBlob, err := src.Blob(ctx, m.Field)
	if err != nil {
		return nil, fmt.Errorf("partition: field blob: %w", err)
	}
	return Partition(manifest, fieldBlob, config, sel, func(d digest.Digest) (int64, error) { return src.Size(ctx, d) })
}
