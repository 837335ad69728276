// Package image runs the image-level operations on a field image read
// through a Source: partition, convert (to the reference 2DFS format) and
// inspect, for both formats (ours, exporter/partition; the reference one,
// exporter/tdfs). It owns what those have in common: the index-or-manifest
// switch, which index entries are images (attestations are not), fetching
// each distinct child once, and telling the two formats apart. The
// rewriters it calls are pure; the Source is the only I/O.
//
// Like the rewriters it has no BuildKit imports: the registry proxy uses it.
package image

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/exporter/partition"
)

// Source reads the images of one repository (a registry repository, an OCI
// layout, the proxy's upstream). Implementations check what they return
// against the digest it was asked by, and refuse content over the caps.
type Source interface {
	// Manifest returns the manifest or index ref names (a tag or a
	// digest) and its media type as the source reports it. An empty ref
	// names the image the source was opened for (a registry reference; an
	// OCI layout's tag, or its only image).
	Manifest(ctx context.Context, ref string) (data []byte, mediaType string, err error)
	// Blob returns a small blob (a config, a field blob) of at most
	// limit bytes, checked against desc.Digest.
	Blob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error)
	// Size returns a blob's size; for a missing blob, an error that says
	// so and names it.
	Size(ctx context.Context, d digest.Digest) (int64, error)
}

// childParallelism bounds how many children of an index are read at once:
// each is a few round trips, and an index rarely has more than a handful of
// platforms.
const childParallelism = 4

// root reads the image ref names and the media type its content declares.
func root(ctx context.Context, src Source, ref string) ([]byte, string, error) {
	data, mt, err := src.Manifest(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	return data, partition.MediaTypeOf(data, mt), nil
}

// entry is an image entry of an index and its position there.
type entry struct {
	pos  int
	desc ocispec.Descriptor
}

// children returns the image entries of an index, in index order.
// Attestations are skipped; any other entry (a nested index, an artifact)
// is an error rather than something a rewrite silently carries along,
// unless skipOthers (inspect only looks).
func children(index []byte, skipOthers bool, lim partition.Limits) ([]entry, error) {
	lim = lim.OrDefault()
	if int64(len(index)) > lim.ManifestBytes {
		return nil, fmt.Errorf("index is %d bytes: %w", len(index), partition.ErrTooLarge)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if len(idx.Manifests) > lim.IndexManifests {
		return nil, fmt.Errorf("index has %d manifests: %w", len(idx.Manifests), partition.ErrTooLarge)
	}
	var out []entry
	for i, d := range idx.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("index manifests[%d]: %w", i, err)
		}
		switch {
		case partition.IsAttestation(d):
		case partition.IsManifest(d.MediaType):
			out = append(out, entry{pos: i, desc: d})
		case skipOthers:
		default:
			return nil, fmt.Errorf("index manifests[%d] is a %q: %w", i, d.MediaType, partition.ErrUnsupported)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("index has no image manifests: %w", partition.ErrNot2DFS)
	}
	return out, nil
}

// eachChild reads every distinct child among entries once (an index may
// list one manifest many times) and runs fn on it, childParallelism at a
// time. The results are by digest. An error names the child's first entry.
func eachChild[T any](ctx context.Context, src Source, entries []entry, fn func(ctx context.Context, manifest []byte, d ocispec.Descriptor) (T, error)) (map[digest.Digest]T, error) {
	var mu sync.Mutex
	out := make(map[digest.Digest]T, len(entries))
	seen := map[digest.Digest]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(childParallelism)
	for _, e := range entries {
		if seen[e.desc.Digest] {
			continue
		}
		seen[e.desc.Digest] = true
		g.Go(func() error {
			m, _, err := src.Manifest(gctx, e.desc.Digest.String())
			if err == nil {
				var r T
				if r, err = fn(gctx, m, e.desc); err == nil {
					mu.Lock()
					out[e.desc.Digest] = r
					mu.Unlock()
					return nil
				}
			}
			return fmt.Errorf("index manifests[%d] (%s): %w", e.pos, e.desc.Digest, err)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}
