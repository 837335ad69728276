package tdfs

import (
	"encoding/json"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/internal/rawjson"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

// LabelPaths is the config label our reference-format images carry instead
// of field.LabelKey: a JSON array of {"row","col","dst"}, row-major. The
// record itself would be stale there (its layer numbers describe our layout),
// but the paths are worth keeping: inspect shows them and a partition turns
// them back into a record. Reference tools ignore it.
const LabelPaths = "org.2dfs.field.paths"

// Media types of layers that can be allotments in the reference format: the
// reference tools only make and serve gzip tars.
const (
	mediaTypeDockerLayerGzip   = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeOCIForeignGzip    = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)

// ErrNotGzip is returned when an allotment layer is not a gzip tar.
var ErrNotGzip = errors.New("the reference 2DFS format supports only gzip allotment layers")

// PathsEntry is one element of the LabelPaths label.
type PathsEntry struct {
	Row int      `json:"row"`
	Col int      `json:"col"`
	Dst []string `json:"dst"`
}

// Image is one of our images converted to the reference format. Only the
// manifest, the config and the new field blob differ from the source image;
// every layer blob is shared.
type Image struct {
	// Source is the digest of our manifest.
	Source digest.Digest

	Manifest       []byte
	ManifestDigest digest.Digest

	Config       []byte
	ConfigDigest digest.Digest

	FieldBlob   []byte
	FieldDigest digest.Digest
	Field       *Field

	// Platform is the config's os/architecture/variant, for index entries.
	Platform ocispec.Platform
}

// Descriptor is the descriptor of the converted manifest.
func (i *Image) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: i.ManifestDigest, Size: int64(len(i.Manifest))}
}

// ConfigDescriptor is the descriptor of the converted config.
func (i *Image) ConfigDescriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: i.ConfigDigest, Size: int64(len(i.Config))}
}

// FieldDescriptor is the manifest entry of the field blob.
func (i *Image) FieldDescriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: MediaTypeField, Digest: i.FieldDigest, Size: int64(len(i.FieldBlob))}
}

// ociLayerType maps a layer media type to its OCI equivalent; the blob is
// the same, only the name differs.
func ociLayerType(mt string) (string, error) {
	switch mt {
	case mediaTypeDockerLayerGzip:
		return ocispec.MediaTypeImageLayerGzip, nil
	case mediaTypeDockerForeignGzip:
		return mediaTypeOCIForeignGzip, nil
	}
	if len(mt) > len("application/vnd.oci.") && mt[:len("application/vnd.oci.")] == "application/vnd.oci." {
		return mt, nil
	}
	return "", fmt.Errorf("layer media type %q has no OCI equivalent", mt)
}

func isGzipLayer(mt string) bool {
	return mt == ocispec.MediaTypeImageLayerGzip || mt == mediaTypeDockerLayerGzip
}

// FromImage converts one of our field images (OCI or Docker manifest and its
// config) to the reference format: an OCI manifest whose layers are the base
// layers and the field layer, a config whose diff_ids cover the base layers
// only, and a field blob naming each allotment's layer digest and diff_id.
// No layer data is read or changed.
func FromImage(manifest []byte, mediaType string, config []byte) (*Image, error) {
	if len(manifest) > partition.MaxManifestBytes {
		return nil, fmt.Errorf("convert: manifest is %d bytes: %w", len(manifest), partition.ErrTooLarge)
	}
	if len(config) > partition.MaxConfigBytes {
		return nil, fmt.Errorf("convert: config is %d bytes: %w", len(config), partition.ErrTooLarge)
	}
	mediaType = partition.MediaTypeOf(manifest, mediaType)
	if !partition.IsManifest(mediaType) {
		return nil, fmt.Errorf("convert: manifest media type %q: %w", mediaType, partition.ErrUnsupported)
	}
	configDesc, err := partition.ConfigOf(manifest)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	if err := checkBlob("config", configDesc, config); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	img, rec, err := partition.RecordOf(config)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("convert: manifest is not valid: %w", err)
	}
	if len(m.Layers) != rec.Layers() {
		return nil, fmt.Errorf("convert: manifest has %d layers but the field record describes %d", len(m.Layers), rec.Layers())
	}

	allotments := make([]Entry, 0, len(rec.Allotments))
	paths := make([]PathsEntry, 0, len(rec.Allotments))
	for _, a := range rec.Allotments {
		layer := m.Layers[a.Layer]
		if !isGzipLayer(layer.MediaType) {
			return nil, fmt.Errorf("convert: allotment %s is a %q layer: %w", a.Cell(), layer.MediaType, ErrNotGzip)
		}
		allotments = append(allotments, Entry{Row: a.Row, Col: a.Col, Digest: layer.Digest, DiffID: img.RootFS.DiffIDs[a.Layer]})
		paths = append(paths, PathsEntry{Row: a.Row, Col: a.Col, Dst: a.Dst})
	}
	f, err := NewField(allotments)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	out := &Image{
		Source:    digest.FromBytes(manifest),
		Field:     f,
		FieldBlob: f.Encode(),
		Platform:  ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant, OSVersion: img.OSVersion},
	}
	out.FieldDigest = digest.FromBytes(out.FieldBlob)
	if out.Config, err = toReferenceConfig(config, rec, paths); err != nil {
		return nil, fmt.Errorf("convert: config: %w", err)
	}
	out.ConfigDigest = digest.FromBytes(out.Config)
	if out.Manifest, err = toReferenceManifest(manifest, rec.BaseLayers, out); err != nil {
		return nil, fmt.Errorf("convert: manifest: %w", err)
	}
	out.ManifestDigest = digest.FromBytes(out.Manifest)
	return out, nil
}

func checkBlob(what string, desc ocispec.Descriptor, data []byte) error {
	if !desc.Digest.Algorithm().Available() || desc.Digest.Algorithm().FromBytes(data) != desc.Digest {
		return fmt.Errorf("%s does not match its digest %s", what, desc.Digest)
	}
	if desc.Size != int64(len(data)) {
		return fmt.Errorf("%s is %d bytes, its descriptor says %d", what, len(data), desc.Size)
	}
	return nil
}

// toReferenceConfig cuts diff_ids to the base layers, keeps the allotments'
// history entries as empty_layer entries (history must match the layers, and
// a partition puts them back), and swaps the record label for LabelPaths.
func toReferenceConfig(config []byte, rec *field.Record, paths []PathsEntry) ([]byte, error) {
	cfg, err := rawjson.Decode(config, "config")
	if err != nil {
		return nil, err
	}
	if err := rawjson.EditDiffIDs(cfg, func(diffIDs []json.RawMessage) []json.RawMessage {
		return append([]json.RawMessage{}, diffIDs[:rec.BaseLayers]...)
	}); err != nil {
		return nil, err
	}

	var history []rawjson.Object
	if err := cfg.Get("history", &history); err != nil {
		return nil, err
	}
	layer := 0
	for _, h := range history {
		var empty bool
		if err := h.Get("empty_layer", &empty); err != nil {
			return nil, fmt.Errorf("history entry: %w", err)
		}
		if empty {
			continue
		}
		if layer >= rec.BaseLayers {
			if err := h.Set("empty_layer", true); err != nil {
				return nil, err
			}
		}
		layer++
	}
	if history != nil {
		if err := cfg.Set("history", history); err != nil {
			return nil, err
		}
	}

	value, err := rawjson.Marshal(paths)
	if err != nil {
		return nil, err
	}
	if err := rawjson.SetLabels(cfg, map[string]string{LabelPaths: string(value)}, field.LabelKey); err != nil {
		return nil, err
	}
	delete(cfg, field.ConfigKey)
	return rawjson.Marshal(cfg)
}

func toReferenceManifest(manifest []byte, baseLayers int, img *Image) ([]byte, error) {
	m, err := rawjson.Decode(manifest, "manifest")
	if err != nil {
		return nil, err
	}
	var layers []rawjson.Object
	if err := m.Get("layers", &layers); err != nil {
		return nil, err
	}
	out := make([]any, 0, baseLayers+1)
	for i, l := range layers[:baseLayers] {
		var mt string
		if err := l.Get("mediaType", &mt); err != nil {
			return nil, err
		}
		oci, err := ociLayerType(mt)
		if err != nil {
			return nil, fmt.Errorf("base layer %d: %w", i, err)
		}
		if err := l.Set("mediaType", oci); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	out = append(out, img.FieldDescriptor())
	if err := m.Set("layers", out); err != nil {
		return nil, err
	}
	if err := m.Edit("config", func(cfg rawjson.Object) error {
		return cfg.SetAll(map[string]any{"mediaType": ocispec.MediaTypeImageConfig, "digest": img.ConfigDigest, "size": len(img.Config)})
	}); err != nil {
		return nil, err
	}
	if err := m.Set("mediaType", ocispec.MediaTypeImageManifest); err != nil {
		return nil, err
	}
	return rawjson.Marshal(m)
}

// IndexImage is an index converted to the reference format.
type IndexImage struct {
	// Source is the digest of the index converted.
	Source digest.Digest
	Index  []byte
	Digest digest.Digest
	// Children are the converted platform images, in index order.
	Children []*Image
}

// Descriptor is the descriptor of the converted index.
func (r *IndexImage) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: r.Digest, Size: int64(len(r.Index))}
}

// FromIndex converts an index (OCI or Docker list) whose image manifests are
// already converted: children holds them by the digest of our manifest
// (exporter/image reads and converts them). It returns an OCI index of the
// results, annotated with
// AnnotationImageName = name as the reference builder does. Entries keep
// their platform and annotations. Attestations of converted images are
// dropped: they attest our image, not this one. Other entries are an error.
func FromIndex(index []byte, mediaType, name string, children map[digest.Digest]*Image) (*IndexImage, error) {
	if len(index) > partition.MaxManifestBytes {
		return nil, fmt.Errorf("convert: index is %d bytes: %w", len(index), partition.ErrTooLarge)
	}
	mediaType = partition.MediaTypeOf(index, mediaType)
	if !partition.IsIndex(mediaType) {
		return nil, fmt.Errorf("convert: index media type %q: %w", mediaType, partition.ErrUnsupported)
	}
	idx, err := rawjson.Decode(index, "index")
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	var entries []rawjson.Object
	if err := idx.Get("manifests", &entries); err != nil {
		return nil, fmt.Errorf("convert: index: %w", err)
	}
	if len(entries) > partition.MaxIndexManifests {
		return nil, fmt.Errorf("convert: index has %d manifests: %w", len(entries), partition.ErrTooLarge)
	}
	descs := make([]ocispec.Descriptor, len(entries))
	for i, e := range entries {
		raw, _ := rawjson.Marshal(e)
		if err := json.Unmarshal(raw, &descs[i]); err != nil {
			return nil, fmt.Errorf("convert: index manifests[%d]: %w", i, err)
		}
	}
	out := &IndexImage{Source: digest.FromBytes(index)}
	converted := map[digest.Digest]bool{}
	results := make([]*Image, len(entries))
	for i, d := range descs {
		if partition.IsAttestation(d) {
			continue
		}
		if !partition.IsManifest(d.MediaType) {
			return nil, fmt.Errorf("convert: index manifests[%d] is a %q: %w", i, d.MediaType, partition.ErrUnsupported)
		}
		r := children[d.Digest]
		if r == nil {
			return nil, fmt.Errorf("convert: index manifests[%d] (%s) was not converted", i, d.Digest)
		}
		results[i] = r
		converted[d.Digest] = true
	}
	if len(converted) == 0 {
		return nil, fmt.Errorf("convert: index has no image manifests: %w", partition.ErrNot2DFS)
	}
	var kept []rawjson.Object
	for i, e := range entries {
		r := results[i]
		if r == nil {
			if converted[digest.Digest(descs[i].Annotations[partition.AnnotationReferenceDigest])] {
				continue
			}
			return nil, fmt.Errorf("convert: index manifests[%d] attests %s, which is not in the index: %w", i, descs[i].Annotations[partition.AnnotationReferenceDigest], partition.ErrUnsupported)
		}
		for k, v := range map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "digest": r.ManifestDigest, "size": len(r.Manifest)} {
			if err := e.Set(k, v); err != nil {
				return nil, err
			}
		}
		kept = append(kept, e)
		out.Children = append(out.Children, r)
	}
	if err := idx.Set("manifests", kept); err != nil {
		return nil, err
	}
	if err := idx.Set("mediaType", ocispec.MediaTypeImageIndex); err != nil {
		return nil, err
	}
	if err := idx.Edit("annotations", func(ann rawjson.Object) error { return ann.Set(AnnotationImageName, name) }); err != nil {
		return nil, err
	}
	if out.Index, err = rawjson.Marshal(idx); err != nil {
		return nil, err
	}
	out.Digest = digest.FromBytes(out.Index)
	return out, nil
}

// WrapIndex puts a single converted image into a one-entry OCI index: the
// reference tools only know images that are indexes. The entry's platform is
// the config's, linux/amd64 when the config names none, as the reference
// builder does.
func WrapIndex(name string, img *Image) *IndexImage {
	desc := img.Descriptor()
	p := img.Platform
	if p.OS == "" || p.Architecture == "" {
		p = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	}
	desc.Platform = &p
	idx := ocispec.Index{
		MediaType:   ocispec.MediaTypeImageIndex,
		Manifests:   []ocispec.Descriptor{desc},
		Annotations: map[string]string{AnnotationImageName: name},
	}
	idx.SchemaVersion = 2
	b, err := rawjson.Marshal(idx)
	if err != nil {
		panic(err) // a typed index always marshals
	}
	return &IndexImage{Source: img.Source, Index: b, Digest: digest.FromBytes(b), Children: []*Image{img}}
}
