package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// Partitioned is a partition of an image: its partitioned manifests and,
// for an index, the partitioned index.
type Partitioned struct {
	// Images are the partitioned image manifests, one per image entry of
	// the index in index order (an entry listed twice is here twice).
	Images []*partition.Result
	// Index is nil when the image is a single manifest (or one platform
	// was picked from an index).
	Index *partition.IndexResult
}

// Descriptor is the descriptor of the partition's top-level manifest or
// index.
func (p *Partitioned) Descriptor() ocispec.Descriptor {
	if p.Index != nil {
		return p.Index.Descriptor()
	}
	return p.Images[0].Descriptor()
}

// Options tune Partition. The zero value is the defaults.
type Options struct {
	// Limits are the size caps of what is read from the Source and
	// partitioned; zero fields are partition.DefaultLimits. Reference
	// format images are also held to tdfs's own caps, the defaults.
	Limits partition.Limits
}

// Partition cuts the partition sel selects of the image ref names in src,
// ours or in the reference format. An index is partitioned platform by
// platform, unless platform (os/arch[/variant]) picks one of them.
func Partition(ctx context.Context, src Source, ref string, sel field.Selection, platform string) (*Partitioned, error) {
	return Options{}.Partition(ctx, src, ref, sel, platform)
}

// Partition is Partition with o.
func (o Options) Partition(ctx context.Context, src Source, ref string, sel field.Selection, platform string) (*Partitioned, error) {
	lim := o.Limits.OrDefault()
	if sel.IsZero() {
		return nil, errors.New("partition: empty selection")
	}
	data, mediaType, err := root(ctx, src, ref)
	if err != nil {
		return nil, err
	}
	switch {
	case partition.IsIndex(mediaType) && platform != "":
		d, err := pickPlatform(data, platform)
		if err != nil {
			return nil, err
		}
		m, _, err := src.Manifest(ctx, d.Digest.String())
		if err != nil {
			return nil, err
		}
		r, err := partitionManifest(ctx, src, m, d.MediaType, sel, lim)
		if err != nil {
			return nil, err
		}
		return &Partitioned{Images: []*partition.Result{r}}, nil
	case partition.IsIndex(mediaType):
		entries, err := children(data, false, lim)
		if err != nil {
			return nil, err
		}
		done, err := eachChild(ctx, src, entries, func(ctx context.Context, m []byte, d ocispec.Descriptor) (*partition.Result, error) {
			return partitionManifest(ctx, src, m, d.MediaType, sel, lim)
		})
		if err != nil {
			return nil, err
		}
		idx, err := lim.Index(data, mediaType, sel, done)
		if err != nil {
			return nil, err
		}
		return &Partitioned{Images: idx.Children, Index: idx}, nil
	case partition.IsManifest(mediaType):
		r, err := partitionManifest(ctx, src, data, mediaType, sel, lim)
		if err != nil {
			return nil, err
		}
		return &Partitioned{Images: []*partition.Result{r}}, nil
	default:
		return nil, notAnImage(mediaType)
	}
}

func notAnImage(mediaType string) error {
	return fmt.Errorf("a %q is not an image manifest or index: %w", mediaType, partition.ErrUnsupported)
}

// partitionManifest partitions one image manifest: ours with
// exporter/partition, a reference-format one with exporter/tdfs.
func partitionManifest(ctx context.Context, src Source, manifest []byte, mediaType string, sel field.Selection, lim partition.Limits) (*partition.Result, error) {
	if !tdfs.IsReference(manifest) {
		cd, err := lim.ConfigOf(manifest)
		if err != nil {
			return nil, err
		}
		config, err := src.Blob(ctx, cd, lim.ConfigBytes)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		return lim.Image(manifest, mediaType, config, sel)
	}
	m, err := tdfs.ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	config, err := src.Blob(ctx, m.Config, min(lim.ConfigBytes, partition.MaxConfigBytes))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	fieldBlob, err := src.Blob(ctx, m.Field, min(lim.FieldBytes, tdfs.MaxFieldBytes))
	if err != nil {
		return nil, fmt.Errorf("field blob: %w", err)
	}
	return tdfs.Partition(manifest, fieldBlob, config, sel, func(d digest.Digest) (int64, error) { return src.Size(ctx, d) })
}

// pickPlatform returns the image entry of index for platform p.
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
		if partition.IsAttestation(d) || !partition.IsManifest(d.MediaType) || d.Platform == nil {
			continue
		}
		seen = append(seen, platforms.Format(*d.Platform))
		if match.Match(*d.Platform) {
			return d, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image for platform %s (the index has %s)", p, strings.Join(seen, ", "))
}
