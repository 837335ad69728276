package tdfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/internal/rawjson"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

// ErrNotReference is returned for a manifest with no field layer.
var ErrNotReference = errors.New("not a reference-format 2DFS image: its manifest has no " + MediaTypeField + " layer")

// Manifest is what a caller needs from a reference manifest to fetch the
// rest: the config, the field blob and the base layers.
type Manifest struct {
	Config ocispec.Descriptor
	Field  ocispec.Descriptor
	// Base are the layers other than the field layer, in order.
	Base []ocispec.Descriptor
	// Annotations are the manifest's annotations.
	Annotations map[string]string
}

// IsReference reports whether manifest is a reference-format image manifest
// (it has a field layer). It does not validate the rest.
func IsReference(manifest []byte) bool {
	var m struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	if len(manifest) > partition.MaxManifestBytes || json.Unmarshal(manifest, &m) != nil {
		return false
	}
	for _, l := range m.Layers {
		if l.MediaType == MediaTypeField {
			return true
		}
	}
	return false
}

// ParseManifest reads a reference-format image manifest: an OCI manifest
// with exactly one field layer. The reference readers find that layer by
// media type, wherever it is; so do we.
func ParseManifest(manifest []byte) (*Manifest, error) {
	if len(manifest) > partition.MaxManifestBytes {
		return nil, fmt.Errorf("manifest is %d bytes: %w", len(manifest), partition.ErrTooLarge)
	}
	// The reference builder writes OCI manifests, but keeps the media type
	// of a single-manifest Docker base image it wrapped; read both.
	if mt := partition.MediaTypeOf(manifest, ""); !partition.IsManifest(mt) {
		return nil, fmt.Errorf("manifest media type %q: reference-format images are image manifests: %w", mt, partition.ErrUnsupported)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid: %w", err)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest config digest: %w", err)
	}
	out := &Manifest{Config: m.Config, Annotations: m.Annotations}
	found := false
	for i, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("manifest layers[%d]: %w", i, err)
		}
		if l.MediaType != MediaTypeField {
			out.Base = append(out.Base, l)
			continue
		}
		if found {
			return nil, fmt.Errorf("manifest has more than one %s layer", MediaTypeField)
		}
		found = true
		out.Field = l
	}
	if !found {
		return nil, ErrNotReference
	}
	if out.Field.Size < 0 || out.Field.Size > MaxFieldBytes {
		return nil, fmt.Errorf("%w: field blob is %d bytes, over the %d byte limit", ErrMalformedField, out.Field.Size, MaxFieldBytes)
	}
	if out.Config.Size < 0 || out.Config.Size > partition.MaxConfigBytes {
		return nil, fmt.Errorf("config is %d bytes: %w", out.Config.Size, partition.ErrTooLarge)
	}
	return out, nil
}

// ReadField checks a field blob against its manifest entry and parses it.
func (m *Manifest) ReadField(blob []byte) (*Field, error) {
	if err := checkBlob("field blob", m.Field, blob); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedField, err)
	}
	return ParseField(blob)
}

// Paths reads the LabelPaths label of a config: the paths each allotment
// writes, for images we converted. Images the reference builder made have
// no such label: the result is nil.
func Paths(cfg *ocispec.Image) (map[field.Cell][]string, error) {
	value, ok := cfg.Config.Labels[LabelPaths]
	if !ok {
		return nil, nil
	}
	var entries []PathsEntry
	if err := json.Unmarshal([]byte(value), &entries); err != nil {
		return nil, fmt.Errorf("label %s is not valid: %w", LabelPaths, err)
	}
	out := make(map[field.Cell][]string, len(entries))
	for _, e := range entries {
		out[field.Cell{Row: e.Row, Col: e.Col}] = e.Dst
	}
	return out, nil
}

// SizeFunc returns the size of a blob in the image's repository. The caller
// owns the I/O (a HEAD request, a stat); for a blob that is missing it should
// return an error that says so.
type SizeFunc func(digest.Digest) (int64, error)

// Partition cuts a partition of a reference-format image: manifest, field
// blob and config in, the same kind of partition exporter/partition cuts of
// our images out. It is an OCI manifest with the base layers then the
// selected allotments in row-major order, each cell once, as
// application/vnd.oci.image.layer.v1.tar+gzip layers (sizes from size); the
// config's diff_ids and history match those layers; the source and
// selection are recorded; and when the image carries LabelPaths (it was
// converted from ours) the config gets a field record, so the partition is
// one of our field images.
func Partition(manifest, fieldBlob, config []byte, sel field.Selection, size SizeFunc) (*partition.Result, error) {
	if sel.IsZero() {
		return nil, errors.New("partition: empty selection")
	}
	if len(config) > partition.MaxConfigBytes {
		return nil, fmt.Errorf("partition: config is %d bytes: %w", len(config), partition.ErrTooLarge)
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	if err := checkBlob("config", m.Config, config); err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	f, err := m.ReadField(fieldBlob)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	img, err := slimConfig(config)
	if err != nil {
		return nil, fmt.Errorf("partition: config is not valid: %w", err)
	}
	if len(img.RootFS.DiffIDs) != len(m.Base) {
		return nil, fmt.Errorf("partition: config has %d diff_ids for %d base layers (in the reference format they cover the base layers only)", len(img.RootFS.DiffIDs), len(m.Base))
	}
	paths, err := Paths(img)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}

	selected := f.Select(sel)
	layers := make([]ocispec.Descriptor, 0, len(selected))
	for _, a := range selected {
		n, err := size(a.Digest)
		if err != nil {
			return nil, fmt.Errorf("partition: allotment %s (blob %s): %w", a.Cell(), a.Digest, err)
		}
		layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: a.Digest, Size: n})
	}

	// A record is written only when it will check out against the config:
	// every selected cell has its paths, and history matches the layers.
	var rec *field.Record
	placed := make([]field.RecordedAllotment, 0, len(selected))
	for _, a := range selected {
		dst := paths[a.Cell()]
		if len(dst) == 0 {
			placed = nil
			break
		}
		placed = append(placed, field.RecordedAllotment{Row: a.Row, Col: a.Col, Dst: dst})
	}
	source := digest.FromBytes(manifest)
	cfg, historyOK, err := partitionConfig(config, f, selected, source, sel)
	if err != nil {
		return nil, fmt.Errorf("partition: config: %w", err)
	}
	if paths != nil && placed != nil && historyOK {
		rec = field.NewRecord(len(m.Base), placed)
		if rec.Allotments == nil {
			rec.Allotments = []field.RecordedAllotment{} // as exporter/partition writes it
		}
		// What rec.Embed writes, set before the one Marshal of the
		// config (Embed would decode and write all of it again).
		label, allotments, err := rec.Encode()
		if err != nil {
			return nil, fmt.Errorf("partition: config: %w", err)
		}
		if err := rawjson.SetLabels(cfg, map[string]string{field.LabelKey: label}); err != nil {
			return nil, fmt.Errorf("partition: config: %w", err)
		}
		cfg[field.ConfigKey] = allotments
	}
	newConfig, err := rawjson.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("partition: config: %w", err)
	}
	res := &partition.Result{
		Source:          source,
		MediaType:       ocispec.MediaTypeImageManifest,
		Config:          newConfig,
		ConfigMediaType: ocispec.MediaTypeImageConfig,
		ConfigDigest:    digest.FromBytes(newConfig),
		Record:          rec,
	}
	if res.Manifest, err = partitionManifest(manifest, layers, res, sel); err != nil {
		return nil, fmt.Errorf("partition: manifest: %w", err)
	}
	res.ManifestDigest = digest.FromBytes(res.Manifest)
	return res, nil
}

// partitionConfig appends the selected diff_ids and fixes history. Our
// converted images keep each allotment's history entry as an empty_layer
// entry in place; when every cell of the field has one, the selected ones
// become layer entries again and the others go, which gives the history a
// partition of the original image has. Otherwise (images the reference
// builder made) one entry per selected allotment is appended. historyOK
// reports whether history now has one layer entry per layer, so a record
// written on it would check.
func partitionConfig(config []byte, f *Field, selected []Entry, source digest.Digest, sel field.Selection) (rawjson.Object, bool, error) {
	cfg, err := rawjson.Decode(config, "config")
	if err != nil {
		return nil, false, err
	}
	var rootfs rawjson.Object
	if err := cfg.Get("rootfs", &rootfs); err != nil {
		return nil, false, err
	}
	var diffIDs []json.RawMessage
	if err := rootfs.Get("diff_ids", &diffIDs); err != nil {
		return nil, false, err
	}
	base := len(diffIDs)
	diffIDs = append([]json.RawMessage{}, diffIDs...)
	for _, a := range selected {
		raw, err := rawjson.Marshal(a.DiffID)
		if err != nil {
			return nil, false, err
		}
		diffIDs = append(diffIDs, raw)
	}
	if err := rootfs.Set("diff_ids", diffIDs); err != nil {
		return nil, false, err
	}
	if err := cfg.Set("rootfs", rootfs); err != nil {
		return nil, false, err
	}

	// History may be hundreds of thousands of entries: they stay slices
	// of config, and only the entries that change are decoded.
	var history []json.RawMessage
	if err := cfg.Get("history", &history); err != nil {
		return nil, false, err
	}
	historyOK := false
	if history != nil {
		byComment := make(map[string]field.Cell, len(f.Entries))
		for _, a := range f.Entries {
			byComment[field.HistoryComment(a.Cell())] = a.Cell()
		}
		isSelected := make(map[field.Cell]bool, len(selected))
		for _, a := range selected {
			isSelected[a.Cell()] = true
		}
		// Find the allotments' empty_layer entries; in place only if they
		// are all there, once each, in row-major order.
		var marked []field.Cell
		markedAt := map[int]field.Cell{}
		layerEntries := 0
		for i, h := range history {
			empty, comment, err := historyFacts(h)
			if err != nil {
				return nil, false, fmt.Errorf("history entry %d: %w", i, err)
			}
			if !empty {
				layerEntries++
				continue
			}
			if c, ok := byComment[comment]; ok {
				marked = append(marked, c)
				markedAt[i] = c
			}
		}
		inPlace := len(marked) == len(f.Entries)
		for i := range marked {
			if !inPlace || marked[i] != f.Entries[i].Cell() {
				inPlace = false
				break
			}
		}
		// Entries are written as rawjson.Marshal writes an Object
		// (sorted keys), into one buffer.
		out := make([]byte, 0, len(cfg["history"])+1024)
		out = append(out, '[')
		n := 0
		add := func(entry []byte) error {
			if n > 0 {
				out = append(out, ',')
			}
			n++
			var err error
			out, err = rawjson.AppendCanonical(out, entry)
			return err
		}
		for i, h := range history {
			c, isMarked := markedAt[i]
			switch {
			case !isMarked:
				if err := add(h); err != nil {
					return nil, false, err
				}
			case inPlace && isSelected[c]:
				o, err := rawjson.Decode(h, fmt.Sprintf("history entry %d", i))
				if err != nil {
					return nil, false, err
				}
				delete(o, "empty_layer")
				raw, err := rawjson.Marshal(o)
				if err != nil {
					return nil, false, err
				}
				if err := add(raw); err != nil {
					return nil, false, err
				}
			}
		}
		if !inPlace {
			created := cfg["created"]
			for _, a := range selected {
				h := rawjson.Object{}
				if created != nil {
					h["created"] = created
				}
				if err := h.Set("created_by", "2dfs reference field allotment "+a.Cell().String()); err != nil {
					return nil, false, err
				}
				if err := h.Set("comment", field.HistoryComment(a.Cell())); err != nil {
					return nil, false, err
				}
				raw, err := rawjson.Marshal(h)
				if err != nil {
					return nil, false, err
				}
				if err := add(raw); err != nil {
					return nil, false, err
				}
			}
		}
		cfg["history"] = append(out, ']')
		historyOK = layerEntries == base
	}

	// A record inherited from a base image would be stale here, and the
	// paths label is superseded by the record Partition writes.
	if err := rawjson.SetLabels(cfg, map[string]string{partition.LabelSource: source.String(), partition.LabelSelection: sel.String()},
		field.LabelKey, LabelPaths); err != nil {
		return nil, false, err
	}
	delete(cfg, field.ConfigKey)
	return cfg, historyOK, nil
}

// slimConfig decodes the parts of an image config Partition reads (rootfs
// and the paths label), leaving the rest, which may be most of 16 MiB, in
// place.
func slimConfig(config []byte) (*ocispec.Image, error) {
	cfg, err := rawjson.Decode(config, "config")
	if err != nil {
		return nil, err
	}
	var img ocispec.Image
	if err := cfg.Get("rootfs", &img.RootFS); err != nil {
		return nil, err
	}
	var run, labels rawjson.Object
	if err := cfg.Get("config", &run); err != nil {
		return nil, err
	}
	if err := run.Get("Labels", &labels); err != nil {
		return nil, err
	}
	if raw, ok := labels[LabelPaths]; ok {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("label %s: %w", LabelPaths, err)
		}
		img.Config.Labels = map[string]string{LabelPaths: v}
	}
	return &img, nil
}

// historyFacts reads what partitionConfig needs of a history entry: whether
// it is an empty_layer one and its comment, as encoding/json would decode
// them, without decoding the rest.
func historyFacts(h json.RawMessage) (empty bool, comment string, err error) {
	if len(h) == 0 || h[0] != '{' {
		return false, "", errors.New("not an object")
	}
	switch v, _ := rawjson.Lookup(h, "empty_layer"); string(v) {
	case "", "null", "false":
	case "true":
		empty = true
	default:
		// Locals, not the results: taking a result's address would
		// move it to the heap on every call.
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return false, "", fmt.Errorf("empty_layer: %w", err)
		}
		empty = b
	}
	v, _ := rawjson.Lookup(h, "comment")
	// Only comments that may be an allotment's are decoded.
	if len(v) > 0 && (bytes.HasPrefix(v, []byte(`"2dfs allotment `)) || bytes.IndexByte(v, '\\') >= 0 || v[0] != '"') {
		var c string
		if err := json.Unmarshal(v, &c); err != nil && string(v) != "null" {
			return false, "", fmt.Errorf("comment: %w", err)
		}
		comment = c
	}
	return empty, comment, nil
}

func partitionManifest(manifest []byte, allotments []ocispec.Descriptor, res *partition.Result, sel field.Selection) ([]byte, error) {
	m, err := rawjson.Decode(manifest, "manifest")
	if err != nil {
		return nil, err
	}
	var layers []rawjson.Object
	if err := m.Get("layers", &layers); err != nil {
		return nil, err
	}
	out := make([]any, 0, len(layers)+len(allotments))
	for i, l := range layers {
		var mt string
		if err := l.Get("mediaType", &mt); err != nil {
			return nil, err
		}
		if mt == MediaTypeField {
			continue
		}
		// The partition is an OCI manifest, whatever the source was.
		oci, err := ociLayerType(mt)
		if err != nil {
			return nil, fmt.Errorf("layers[%d]: %w", i, err)
		}
		if err := l.Set("mediaType", oci); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	for _, a := range allotments {
		out = append(out, a)
	}
	if err := m.Set("layers", out); err != nil {
		return nil, err
	}
	if err := m.Edit("config", func(cfg rawjson.Object) error {
		return cfg.SetAll(map[string]any{"mediaType": res.ConfigMediaType, "digest": res.ConfigDigest, "size": len(res.Config)})
	}); err != nil {
		return nil, err
	}
	if err := m.Set("mediaType", ocispec.MediaTypeImageManifest); err != nil {
		return nil, err
	}
	if err := m.Edit("annotations", func(ann rawjson.Object) error {
		return ann.SetAll(map[string]any{partition.LabelSource: res.Source.String(), partition.LabelSelection: sel.String()})
	}); err != nil {
		return nil, err
	}
	return rawjson.Marshal(m)
}
