// Package partition rewrites a 2DFS image into a partition: the same image
// with only the allotments a selection names. It is pure and deterministic:
// bytes in, bytes out, no I/O, and the same input always gives the same
// output, so every proxy or exporter that partitions an image produces the
// same digests. The format of a partition is described in docs/partition.md.
//
// It has no BuildKit imports on purpose: the registry proxy uses it and must
// stay small.
package partition

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/internal/rawjson"
	"github.com/tdfs-kit/tdfs/field"
)

// Media types the rewriter reads besides the OCI ones in image-spec.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// Labels (on the config) and annotations (on OCI manifests and indexes) that
// say where a partition comes from.
const (
	// LabelSource is the digest of the manifest (or index) partitioned.
	LabelSource = "org.2dfs.partition.source"
	// LabelSelection is the canonical selection (field.Selection.String).
	LabelSelection = "org.2dfs.partition.selection"
)

// Default size caps (DefaultLimits). Inputs come from registries the
// caller does not control; the caps keep a hostile or broken upstream from
// making us parse huge JSON.
const (
	MaxManifestBytes = 4 << 20
	// MaxConfigBytes leaves room for a field record near its own 4 MiB cap
	// (version 2 records keep it in the config, beside the rest).
	MaxConfigBytes = 16 << 20
	// MaxIndexManifests bounds the entries of an index we partition.
	MaxIndexManifests = 1024
	// MaxFieldBytes caps the field blob of a reference-format image.
	MaxFieldBytes = 16 << 20
)

// Limits are the size caps a partition is made within. The registry proxy
// makes them flags; everything else uses DefaultLimits. A zero field means
// its default.
type Limits struct {
	// ManifestBytes caps a manifest or an index.
	ManifestBytes int64
	// ConfigBytes caps an image config.
	ConfigBytes int64
	// IndexManifests caps the entries of an index.
	IndexManifests int
	// FieldBytes caps the field blob of a reference-format image.
	FieldBytes int64
}

// DefaultLimits are the caps of the package functions (Image, Index,
// ConfigOf).
var DefaultLimits = Limits{MaxManifestBytes, MaxConfigBytes, MaxIndexManifests, MaxFieldBytes}

// OrDefault fills the zero fields of l from DefaultLimits.
func (l Limits) OrDefault() Limits {
	d := DefaultLimits
	if l.ManifestBytes > 0 {
		d.ManifestBytes = l.ManifestBytes
	}
	if l.ConfigBytes > 0 {
		d.ConfigBytes = l.ConfigBytes
	}
	if l.IndexManifests > 0 {
		d.IndexManifests = l.IndexManifests
	}
	if l.FieldBytes > 0 {
		d.FieldBytes = l.FieldBytes
	}
	return d
}

// ErrNot2DFS is returned for an image whose config carries no field record.
var ErrNot2DFS = errors.New("not a 2DFS image: its config has no " + field.LabelKey + " label")

// ErrTooLarge is returned for inputs over the size caps.
var ErrTooLarge = errors.New("too large to partition")

// ErrUnsupported is returned for media types the rewriter does not handle.
var ErrUnsupported = errors.New("unsupported media type")

// IsManifest reports whether mediaType is an image manifest we partition.
func IsManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == MediaTypeDockerManifest
}

// IsIndex reports whether mediaType is an index (manifest list).
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// MediaTypeOf returns the media type of a manifest or index: the one the
// registry sent (contentType) when it is one we know, else the body's
// mediaType field. OCI manifests may omit the field, so a body with layers
// and no mediaType is an OCI manifest and one with manifests an OCI index.
func MediaTypeOf(data []byte, contentType string) string {
	if IsManifest(contentType) || IsIndex(contentType) {
		return contentType
	}
	var probe struct {
		MediaType string          `json:"mediaType"`
		Layers    json.RawMessage `json:"layers"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return contentType
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Layers != nil:
		return ocispec.MediaTypeImageManifest
	}
	return contentType
}

// ConfigOf returns the config descriptor of an image manifest, so a caller
// knows which blob to fetch before calling Image.
func ConfigOf(manifest []byte) (ocispec.Descriptor, error) {
	return DefaultLimits.ConfigOf(manifest)
}

// ConfigOf is ConfigOf within l.
func (l Limits) ConfigOf(manifest []byte) (ocispec.Descriptor, error) {
	l = l.OrDefault()
	if int64(len(manifest)) > l.ManifestBytes {
		return ocispec.Descriptor{}, fmt.Errorf("manifest is %d bytes: %w", len(manifest), ErrTooLarge)
	}
	var m struct {
		Config *ocispec.Descriptor `json:"config"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if m.Config == nil {
		return ocispec.Descriptor{}, errors.New("manifest has no config")
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("manifest config digest: %w", err)
	}
	if m.Config.Size < 0 || m.Config.Size > l.ConfigBytes {
		return ocispec.Descriptor{}, fmt.Errorf("config is %d bytes: %w", m.Config.Size, ErrTooLarge)
	}
	return *m.Config, nil
}

// Result is a partitioned image manifest and its config.
type Result struct {
	// Source is the digest of the manifest that was partitioned.
	Source digest.Digest

	Manifest       []byte
	MediaType      string
	ManifestDigest digest.Digest

	Config          []byte
	ConfigMediaType string
	ConfigDigest    digest.Digest

	// Record is the field record of the partition.
	Record *field.Record
}

// Descriptor is the descriptor of the partitioned manifest.
func (r *Result) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: r.MediaType, Digest: r.ManifestDigest, Size: int64(len(r.Manifest))}
}

// Image partitions an image manifest (OCI or Docker schema 2) and its config.
// The partition keeps the base layers and the layers of the selected
// allotments in row-major order; its config keeps the matching diff_ids and
// history entries (and every empty_layer entry), and carries a field record
// of what it holds, so it can itself be partitioned.
func Image(manifest []byte, mediaType string, config []byte, sel field.Selection) (*Result, error) {
	return DefaultLimits.Image(manifest, mediaType, config, sel)
}

// Image is Image within l.
func (l Limits) Image(manifest []byte, mediaType string, config []byte, sel field.Selection) (*Result, error) {
	l = l.OrDefault()
	if sel.IsZero() {
		return nil, errors.New("partition: empty selection")
	}
	if int64(len(manifest)) > l.ManifestBytes {
		return nil, fmt.Errorf("partition: manifest is %d bytes: %w", len(manifest), ErrTooLarge)
	}
	if int64(len(config)) > l.ConfigBytes {
		return nil, fmt.Errorf("partition: config is %d bytes: %w", len(config), ErrTooLarge)
	}
	mediaType = MediaTypeOf(manifest, mediaType)
	if !IsManifest(mediaType) {
		return nil, fmt.Errorf("partition: manifest media type %q: %w", mediaType, ErrUnsupported)
	}
	configDesc, err := l.ConfigOf(manifest)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	if !configDesc.Digest.Algorithm().Available() || configDesc.Digest.Algorithm().FromBytes(config) != configDesc.Digest {
		return nil, fmt.Errorf("partition: config does not match the manifest's config digest %s", configDesc.Digest)
	}

	// The config is read once, its values left where they are in config
	// (rawjson), and only the parts the record needs are decoded: a
	// config near its cap costs a small multiple of its size, not one
	// copy per field touched.
	cfg, err := rawjson.Decode(config, "config")
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	history, err := readHistory(cfg)
	if err != nil {
		return nil, fmt.Errorf("partition: config: %w", err)
	}
	rec, err := recordIn(cfg, history)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}

	var selected []field.RecordedAllotment
	keep := make(map[int]bool, rec.BaseLayers+len(rec.Allotments))
	for i := range rec.BaseLayers {
		keep[i] = true
	}
	for _, a := range rec.Allotments {
		if sel.Contains(a.Cell()) {
			keep[a.Layer] = true
			selected = append(selected, a)
		}
	}
	newRec := field.NewRecord(rec.BaseLayers, selected)
	if newRec.Allotments == nil {
		newRec.Allotments = []field.RecordedAllotment{} // "allotments":[] reads better than null
	}
	source := digest.FromBytes(manifest)

	newConfig, err := rewriteConfig(cfg, history, keep, newRec, source, sel)
	if err != nil {
		return nil, fmt.Errorf("partition: config: %w", err)
	}
	res := &Result{
		Source:          source,
		MediaType:       mediaType,
		Config:          newConfig,
		ConfigMediaType: configDesc.MediaType,
		ConfigDigest:    digest.FromBytes(newConfig),
		Record:          newRec,
	}
	res.Manifest, err = rewriteManifest(manifest, mediaType, keep, rec.Layers(), res.ConfigDigest, int64(len(newConfig)), source, sel)
	if err != nil {
		return nil, fmt.Errorf("partition: manifest: %w", err)
	}
	res.ManifestDigest = digest.FromBytes(res.Manifest)
	return res, nil
}

// historyEntry is an entry of the config's history, as a slice of the
// config, and whether it is an empty_layer one.
type historyEntry struct {
	raw   json.RawMessage
	empty bool
}

// readHistory returns the config's history entries; nil when it has none
// (or null).
func readHistory(cfg rawjson.Object) ([]historyEntry, error) {
	var raw []json.RawMessage
	if err := cfg.Get("history", &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, nil
	}
	out := make([]historyEntry, len(raw))
	for i, h := range raw {
		// json.Unmarshal into a struct would allocate for each of
		// what may be hundreds of thousands of entries.
		if h[0] != '{' {
			return nil, fmt.Errorf("history entry %d is not an object", i)
		}
		switch v, _ := rawjson.Lookup(h, "empty_layer"); string(v) {
		case "", "null", "false":
		case "true":
			out[i].empty = true
		default:
			if err := json.Unmarshal(v, &out[i].empty); err != nil {
				return nil, fmt.Errorf("history entry %d: empty_layer: %w", i, err)
			}
		}
		out[i].raw = h
	}
	return out, nil
}

// recordIn reads and checks the field record of a config (RecordOf) from
// a config cut down to what the record is checked against: its label, the
// top-level org.2dfs.* keys, rootfs, and the history entries of layers.
// Decoding the whole config into typed structs would copy every string in
// it, for nothing.
func recordIn(cfg rawjson.Object, history []historyEntry) (*field.Record, error) {
	var run, labels rawjson.Object
	if err := cfg.Get("config", &run); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := run.Get("Labels", &labels); err != nil {
		return nil, fmt.Errorf("config: config: %w", err)
	}
	label, ok := labels[field.LabelKey]
	if !ok {
		return nil, ErrNot2DFS
	}
	slim := rawjson.Object{"rootfs": cfg["rootfs"]}
	for k, v := range cfg {
		if strings.HasPrefix(k, "org.2dfs.") {
			slim[k] = v
		}
	}
	if err := slim.Set("config", map[string]any{"Labels": map[string]json.RawMessage{field.LabelKey: label}}); err != nil {
		return nil, err
	}
	if history != nil {
		layers := []json.RawMessage{}
		for _, h := range history {
			if !h.empty {
				layers = append(layers, h.raw)
			}
		}
		if err := slim.Set("history", layers); err != nil {
			return nil, err
		}
	}
	b, err := rawjson.Marshal(slim)
	if err != nil {
		return nil, err
	}
	_, rec, err := RecordOf(b)
	return rec, err
}

func rewriteConfig(cfg rawjson.Object, history []historyEntry, keep map[int]bool, rec *field.Record, source digest.Digest, sel field.Selection) ([]byte, error) {
	if err := rawjson.EditDiffIDs(cfg, func(diffIDs []json.RawMessage) []json.RawMessage {
		kept := []json.RawMessage{}
		for i, id := range diffIDs {
			if keep[i] {
				kept = append(kept, id)
			}
		}
		return kept
	}); err != nil {
		return nil, err
	}

	if history != nil {
		var kept []json.RawMessage
		if len(history) > 0 {
			kept = make([]json.RawMessage, 0, len(history))
		}
		layer := 0
		for _, h := range history {
			if h.empty {
				kept = append(kept, h.raw)
				continue
			}
			if keep[layer] {
				kept = append(kept, h.raw)
			}
			layer++
		}
		if len(kept) == 0 {
			kept = nil // null, as it always was
		}
		if err := cfg.Set("history", kept); err != nil {
			return nil, err
		}
	}

	// Always the current record version, whatever the source's. This is
	// what rec.Embed writes, set here so that the config is marshaled
	// once: Embed would decode and write all of it again.
	label, allotments, err := rec.Encode()
	if err != nil {
		return nil, err
	}
	if err := rawjson.SetLabels(cfg, map[string]string{
		field.LabelKey: label,
		LabelSource:    source.String(),
		LabelSelection: sel.String(),
	}); err != nil {
		return nil, err
	}
	cfg[field.ConfigKey] = allotments
	return rawjson.Marshal(cfg)
}

func rewriteManifest(manifest []byte, mediaType string, keep map[int]bool, layers int, configDigest digest.Digest, configSize int64, source digest.Digest, sel field.Selection) ([]byte, error) {
	m, err := rawjson.Decode(manifest, "manifest")
	if err != nil {
		return nil, err
	}
	var all []json.RawMessage
	if err := m.Get("layers", &all); err != nil {
		return nil, err
	}
	if len(all) != layers {
		return nil, fmt.Errorf("manifest has %d layers but the config's field record describes %d", len(all), layers)
	}
	var kept []json.RawMessage
	for i, l := range all {
		if keep[i] {
			kept = append(kept, l)
		}
	}
	if kept == nil {
		kept = []json.RawMessage{}
	}
	if err := m.Set("layers", kept); err != nil {
		return nil, err
	}

	if err := m.Edit("config", func(cfg rawjson.Object) error {
		return cfg.SetAll(map[string]any{"digest": configDigest, "size": configSize})
	}); err != nil {
		return nil, err
	}

	if mediaType == ocispec.MediaTypeImageManifest {
		if err := annotate(m, source, sel); err != nil {
			return nil, err
		}
	}
	return rawjson.Marshal(m)
}

// annotate records the source and selection in an OCI manifest's or index's
// annotations. Docker schema 2 has no annotations; there the config labels
// (of every platform's config, for a manifest list) carry the same facts.
func annotate(m rawjson.Object, source digest.Digest, sel field.Selection) error {
	return m.Edit("annotations", func(ann rawjson.Object) error {
		return ann.SetAll(map[string]any{LabelSource: source.String(), LabelSelection: sel.String()})
	})
}

// RecordOf decodes an image config and reads its field record, checked
// against the config (field.FromConfig). An image without a record is
// ErrNot2DFS.
func RecordOf(config []byte) (*ocispec.Image, *field.Record, error) {
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return nil, nil, fmt.Errorf("config is not valid: %w", err)
	}
	rec, err := field.FromConfig(config)
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		return nil, nil, ErrNot2DFS
	}
	return &img, rec, nil
}
