package partition

import (
	"encoding/json"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/internal/rawjson"
	"github.com/tdfs-kit/tdfs/field"
)

// Annotations BuildKit puts on the attestation manifests of an index.
const (
	AnnotationReferenceType   = "vnd.docker.reference.type"
	AnnotationReferenceDigest = "vnd.docker.reference.digest"
	ReferenceTypeAttestation  = "attestation-manifest"
)

// IsAttestation reports whether an index entry is a BuildKit attestation
// manifest rather than an image.
func IsAttestation(d ocispec.Descriptor) bool {
	return d.Annotations[AnnotationReferenceType] == ReferenceTypeAttestation
}

// IndexResult is a partitioned index and the partitions of its manifests.
type IndexResult struct {
	// Source is the digest of the index that was partitioned.
	Source    digest.Digest
	Index     []byte
	MediaType string
	Digest    digest.Digest
	// Children are the partitions of the platform manifests, in index
	// order.
	Children []*Result
}

// Index partitions an index (OCI index or Docker manifest list) whose image
// manifests are already partitioned: children holds their partitions by the
// digest of the manifest partitioned (exporter/image reads and partitions
// them, each distinct one once). Entries keep their platform,
// annotations and order. Attestation manifests that describe a manifest we
// replaced are dropped: they attest the source image, not the partition.
// Other attestations are kept. Any other entry (a nested index, an artifact)
// is an error rather than something a partition silently carries along.
func Index(index []byte, mediaType string, sel field.Selection, children map[digest.Digest]*Result) (*IndexResult, error) {
	return DefaultLimits.Index(index, mediaType, sel, children)
}

// Index is Index within l.
func (l Limits) Index(index []byte, mediaType string, sel field.Selection, children map[digest.Digest]*Result) (*IndexResult, error) {
	l = l.OrDefault()
	if sel.IsZero() {
		return nil, errors.New("partition: empty selection")
	}
	if int64(len(index)) > l.ManifestBytes {
		return nil, fmt.Errorf("partition: index is %d bytes: %w", len(index), ErrTooLarge)
	}
	mediaType = MediaTypeOf(index, mediaType)
	if !IsIndex(mediaType) {
		return nil, fmt.Errorf("partition: index media type %q: %w", mediaType, ErrUnsupported)
	}
	idx, err := rawjson.Decode(index, "index")
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	var entries []json.RawMessage
	if err := idx.Get("manifests", &entries); err != nil {
		return nil, fmt.Errorf("partition: index: %w", err)
	}
	if len(entries) > l.IndexManifests {
		return nil, fmt.Errorf("partition: index has %d manifests: %w", len(entries), ErrTooLarge)
	}

	descs := make([]ocispec.Descriptor, len(entries))
	isImage := make([]bool, len(entries))
	images := 0
	for i, raw := range entries {
		if err := json.Unmarshal(raw, &descs[i]); err != nil {
			return nil, fmt.Errorf("partition: index manifests[%d]: %w", i, err)
		}
		if err := descs[i].Digest.Validate(); err != nil {
			return nil, fmt.Errorf("partition: index manifests[%d]: %w", i, err)
		}
		switch {
		case IsAttestation(descs[i]):
		case IsManifest(descs[i].MediaType):
			isImage[i] = true
			images++
		default:
			return nil, fmt.Errorf("partition: index manifests[%d] is a %q: %w", i, descs[i].MediaType, ErrUnsupported)
		}
	}
	if images == 0 {
		return nil, fmt.Errorf("partition: index has no image manifests: %w", ErrNot2DFS)
	}

	results := make([]*Result, len(entries))
	for i := range entries {
		if !isImage[i] {
			continue
		}
		r := children[descs[i].Digest]
		if r == nil {
			return nil, fmt.Errorf("partition: index manifests[%d] (%s) has no partition", i, descs[i].Digest)
		}
		if r.MediaType != descs[i].MediaType {
			return nil, fmt.Errorf("partition: index manifests[%d]: partition is a %q, the index says %q", i, r.MediaType, descs[i].MediaType)
		}
		results[i] = r
	}

	replaced := map[digest.Digest]bool{}
	for i, r := range results {
		if r != nil {
			replaced[descs[i].Digest] = true
		}
	}
	out := &IndexResult{Source: digest.FromBytes(index), MediaType: mediaType}
	var kept []json.RawMessage
	for i, raw := range entries {
		r := results[i]
		if r == nil {
			if replaced[digest.Digest(descs[i].Annotations[AnnotationReferenceDigest])] {
				continue
			}
			kept = append(kept, raw)
			continue
		}
		entry, err := rawjson.Decode(raw, "index entry")
		if err != nil {
			return nil, fmt.Errorf("partition: %w", err)
		}
		if err := entry.Set("digest", r.ManifestDigest); err != nil {
			return nil, err
		}
		if err := entry.Set("size", len(r.Manifest)); err != nil {
			return nil, err
		}
		b, err := rawjson.Marshal(entry)
		if err != nil {
			return nil, err
		}
		kept = append(kept, b)
		out.Children = append(out.Children, r)
	}
	if err := idx.Set("manifests", kept); err != nil {
		return nil, err
	}
	if mediaType == ocispec.MediaTypeImageIndex {
		if err := annotate(idx, out.Source, sel); err != nil {
			return nil, err
		}
	}
	if out.Index, err = rawjson.Marshal(idx); err != nil {
		return nil, err
	}
	out.Digest = digest.FromBytes(out.Index)
	return out, nil
}

// Descriptor is the descriptor of the partitioned index.
func (r *IndexResult) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: r.MediaType, Digest: r.Digest, Size: int64(len(r.Index))}
}
