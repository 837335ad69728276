// Package partitiontest builds small hand-made images for tests of the
// partition rewriter and the registry proxy: 2DFS images laid out like the
// frontend lays them out, plain images, and indexes with attestations.
package partitiontest

import (
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

// Image is a manifest, its config and its layer blobs.
type Image struct {
	MediaType string
	Manifest  []byte
	Config    []byte
	Layers    [][]byte
	// Cells are the allotments, in layer order.
	Cells []field.Cell
}

// Digest is the manifest digest.
func (i *Image) Digest() digest.Digest { return digest.FromBytes(i.Manifest) }

// Blobs returns the config and layers, the blobs a registry must hold.
func (i *Image) Blobs() [][]byte { return append([][]byte{i.Config}, i.Layers...) }

// LayerFor returns the layer blob of cell c, or nil.
func (i *Image) LayerFor(c field.Cell) []byte {
	for k, cell := range i.Cells {
		if cell == c {
			return i.Layers[len(i.Layers)-len(i.Cells)+k]
		}
	}
	return nil
}

// New builds a 2DFS image with baseLayers base layers and one allotment per
// cell (cells must be in row-major order and distinct). mediaType is the
// manifest media type, OCI or Docker. The config also carries fields the
// rewriter does not know (container_config, a vendor field) so tests can
// check they survive, and an empty_layer history entry between the base and
// the allotments.
func New(mediaType string, baseLayers int, cells ...field.Cell) *Image {
	return build(mediaType, baseLayers, cells, field.RecordVersion)
}

// NewV1 is New with a version 1 record: the whole record in the label, as
// images built before version 2 carry it.
func NewV1(mediaType string, baseLayers int, cells ...field.Cell) *Image {
	return build(mediaType, baseLayers, cells, 1)
}

// Plain builds an image with no field record: not a 2DFS image.
func Plain(mediaType string, layers int) *Image {
	return build(mediaType, layers, nil, 0)
}

// build lays out an image; recordVersion 0 means no record.
func build(mediaType string, baseLayers int, cells []field.Cell, recordVersion int) *Image {
	img := &Image{MediaType: mediaType, Cells: cells}
	var diffIDs []string
	var history []map[string]any
	for i := range baseLayers {
		img.Layers = append(img.Layers, fmt.Appendf(nil, "base layer %d", i))
		history = append(history, map[string]any{"created_by": fmt.Sprintf("RUN base %d", i)})
	}
	history = append(history, map[string]any{"created_by": "ENV A=1", "empty_layer": true})
	var placed []field.RecordedAllotment
	for _, c := range cells {
		img.Layers = append(img.Layers, fmt.Appendf(nil, "allotment %s", c))
		history = append(history, map[string]any{"created_by": "2dfs", "comment": field.HistoryComment(c)})
		placed = append(placed, field.RecordedAllotment{Row: c.Row, Col: c.Col, Dst: []string{fmt.Sprintf("/data/%d/%d", c.Row, c.Col)}})
	}
	for _, l := range img.Layers {
		// The rewriter never reads layers, so the "uncompressed" digest can
		// be the blob's own.
		diffIDs = append(diffIDs, digest.FromBytes(l).String())
	}
	labels := map[string]string{"maintainer": "tests <&>"}
	rec := field.NewRecord(baseLayers, placed)
	if recordVersion == 1 {
		rec.Version = 1
		labels[field.LabelKey] = string(mustJSON(rec)) // Record's JSON tags are the version 1 layout
	}
	cfg := map[string]any{
		"architecture":     "amd64",
		"os":               "linux",
		"config":           map[string]any{"Labels": labels, "Env": []string{"PATH=/bin"}},
		"container_config": map[string]any{"Hostname": "docker-only-field"},
		"x-vendor":         []int{1, 2, 3},
		"rootfs":           map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":          history,
	}
	img.Config = mustJSON(cfg)
	if recordVersion == field.RecordVersion {
		var err error
		if img.Config, err = rec.Embed(img.Config); err != nil {
			panic(err)
		}
	}

	configType, layerType := ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
	if mediaType == partition.MediaTypeDockerManifest {
		configType, layerType = partition.MediaTypeDockerConfig, "application/vnd.docker.image.rootfs.diff.tar.gzip"
	}
	var layers []map[string]any
	for _, l := range img.Layers {
		layers = append(layers, map[string]any{"mediaType": layerType, "digest": digest.FromBytes(l), "size": len(l)})
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaType,
		"config":        map[string]any{"mediaType": configType, "digest": digest.FromBytes(img.Config), "size": len(img.Config)},
		"layers":        layers,
	}
	if mediaType == ocispec.MediaTypeImageManifest {
		m["annotations"] = map[string]string{"org.opencontainers.image.title": "handmade"}
	}
	img.Manifest = mustJSON(m)
	return img
}

// Attestation builds a BuildKit-style attestation manifest for subject.
func Attestation(subject digest.Digest) *Image {
	img := &Image{MediaType: ocispec.MediaTypeImageManifest}
	img.Config = []byte(`{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`)
	statement := fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"digest":{"sha256":%q}}]}`, subject.Encoded())
	img.Layers = [][]byte{statement}
	img.Manifest = mustJSON(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageManifest,
		"config":        map[string]any{"mediaType": ocispec.MediaTypeImageConfig, "digest": digest.FromBytes(img.Config), "size": len(img.Config)},
		"layers": []map[string]any{{"mediaType": "application/vnd.in-toto+json", "digest": digest.FromBytes(statement), "size": len(statement),
			"annotations": map[string]string{"in-toto.io/predicate-type": "https://spdx.dev/Document"}}},
	})
	return img
}

// Platform is one entry of an index.
type Platform struct {
	Image    *Image
	Platform ocispec.Platform
	// Attest adds an attestation manifest for this image.
	Attest bool
}

// Index builds an index of mediaType (OCI or Docker list). It returns the
// index and every manifest it references (platform images, then
// attestations), which a registry must hold.
func Index(mediaType string, platforms ...Platform) (index []byte, manifests []*Image) {
	var entries []map[string]any
	var attestations []*Image
	for _, p := range platforms {
		manifests = append(manifests, p.Image)
		entries = append(entries, map[string]any{
			"mediaType": p.Image.MediaType, "digest": p.Image.Digest(), "size": len(p.Image.Manifest),
			"platform": p.Platform,
		})
	}
	for _, p := range platforms {
		if !p.Attest {
			continue
		}
		a := Attestation(p.Image.Digest())
		attestations = append(attestations, a)
		entries = append(entries, map[string]any{
			"mediaType": a.MediaType, "digest": a.Digest(), "size": len(a.Manifest),
			"platform": ocispec.Platform{Architecture: "unknown", OS: "unknown"},
			"annotations": map[string]string{
				partition.AnnotationReferenceType:   partition.ReferenceTypeAttestation,
				partition.AnnotationReferenceDigest: p.Image.Digest().String(),
			},
		})
	}
	idx := map[string]any{"schemaVersion": 2, "mediaType": mediaType, "manifests": entries}
	if mediaType == ocispec.MediaTypeImageIndex {
		idx["annotations"] = map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
	}
	return mustJSON(idx), append(manifests, attestations...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
