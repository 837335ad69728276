package field

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LabelKey is the image config label (config.Labels) that holds the record
// header: {"version":2,"baseLayers":B,"allotments":N}. The format is
// specified in docs/field-record.md. Version 1 records held the whole record
// in this label, which made large fields unrunnable: containerd copies image
// labels into container labels and refuses any over 4,096 bytes.
const LabelKey = "org.2dfs.field"

// ConfigKey is the top-level key of the image config that holds the
// per-allotment data of a version 2 record. Registries and copy tools store
// the config blob as it is, and BuildKit's exporter keeps unknown top-level
// keys, so the data may grow with the field without touching any label.
const ConfigKey = "org.2dfs.field.allotments"

// RecordVersion is the version of the record format this package writes.
// It also reads version 1.
const RecordVersion = 2

// maxRecordBytes caps the label and the allotments we are willing to parse.
// A full field of MaxCoordinate² cells is not a realistic image; a few MiB
// covers tens of thousands of allotments with long paths.
const maxRecordBytes = 4 << 20

// Record describes the field of an image: which layers are the base and which
// layer holds each allotment. Digests are not recorded: they live in the
// manifest and config, and a record that repeated them could only go stale.
type Record struct {
	// Version is the format version the record was read in (1 or 2);
	// Encode always writes RecordVersion.
	Version    int                 `json:"version"`
	BaseLayers int                 `json:"baseLayers"`
	Allotments []RecordedAllotment `json:"allotments"`
}

// RecordedAllotment is one allotment as the field record lists it: its cell,
// its layer and what it writes.
type RecordedAllotment struct {
	Row int `json:"row"`
	Col int `json:"col"`
	// Layer is the index of the allotment's layer in the manifest's layers
	// and the config's rootfs.diff_ids. Version 2 does not store it: it is
	// always BaseLayers plus the allotment's index.
	Layer int `json:"layer"`
	// Dst lists the absolute paths the allotment writes, in descriptor order.
	Dst []string `json:"dst"`
}

// Cell returns the allotment's address.
func (p RecordedAllotment) Cell() Cell { return Cell{Row: p.Row, Col: p.Col} }

// NewRecord lays allotments out after baseLayers in row-major order. The
// input order does not matter.
func NewRecord(baseLayers int, allotments []RecordedAllotment) *Record {
	sorted := slices.Clone(allotments)
	slices.SortStableFunc(sorted, func(a, b RecordedAllotment) int { return a.Cell().Compare(b.Cell()) })
	for i := range sorted {
		sorted[i].Layer = baseLayers + i
	}
	return &Record{Version: RecordVersion, BaseLayers: baseLayers, Allotments: sorted}
}

// Layers is the total number of layers an image with this record has.
func (r *Record) Layers() int { return r.BaseLayers + len(r.Allotments) }

// header is the version 2 label value. Its size does not grow with the
// field: three small integers.
type header struct {
	Version    int `json:"version"`
	BaseLayers int `json:"baseLayers"`
	Allotments int `json:"allotments"`
}

// entry is one allotment in the version 2 ConfigKey array.
type entry struct {
	Row int      `json:"row"`
	Col int      `json:"col"`
	Dst []string `json:"dst"`
}

// recordV1 is the version 1 label value: the whole record, with layers.
type recordV1 struct {
	Version    int                 `json:"version"`
	BaseLayers int                 `json:"baseLayers"`
	Allotments []RecordedAllotment `json:"allotments"`
}

// Encode returns the version 2 label value (the header) and the value of
// ConfigKey (the allotments, a JSON array). The output is stable: the same
// record always gives the same bytes, whatever version it was read in.
func (r *Record) Encode() (label string, allotments []byte, err error) {
	if err := r.Validate(); err != nil {
		return "", nil, err
	}
	h, err := marshal(header{Version: RecordVersion, BaseLayers: r.BaseLayers, Allotments: len(r.Allotments)})
	if err != nil {
		return "", nil, err
	}
	entries := make([]entry, len(r.Allotments))
	for i, a := range r.Allotments {
		entries[i] = entry{Row: a.Row, Col: a.Col, Dst: a.Dst}
	}
	allotments, err = marshal(entries)
	if err != nil {
		return "", nil, err
	}
	return string(h), allotments, nil
}

// Embed writes the record into a raw image config: the header into the
// label, the allotments into ConfigKey. Every other field is kept as raw
// bytes, so nothing the record does not own is lost or reformatted beyond
// key order (keys come out sorted, as every rewriter here writes them).
func (r *Record) Embed(config []byte) ([]byte, error) {
	label, allotments, err := r.Encode()
	if err != nil {
		return nil, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(config, &cfg); err != nil || cfg == nil {
		return nil, fmt.Errorf("field record: image config is not a JSON object: %v", err)
	}
	var run map[string]json.RawMessage
	if raw, ok := cfg["config"]; ok && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &run); err != nil {
			return nil, fmt.Errorf("field record: image config field \"config\": %w", err)
		}
	}
	if run == nil {
		run = map[string]json.RawMessage{}
	}
	var labels map[string]json.RawMessage
	if raw, ok := run["Labels"]; ok && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &labels); err != nil {
			return nil, fmt.Errorf("field record: image config field \"config.Labels\": %w", err)
		}
	}
	if labels == nil {
		labels = map[string]json.RawMessage{}
	}
	if labels[LabelKey], err = marshal(label); err != nil {
		return nil, err
	}
	if run["Labels"], err = marshal(labels); err != nil {
		return nil, err
	}
	if cfg["config"], err = marshal(run); err != nil {
		return nil, err
	}
	cfg[ConfigKey] = allotments
	return marshal(cfg)
}

// marshal is json.Marshal without HTML escaping (paths keep their & < >)
// and without a trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode parses and validates a record: the label value and, for version 2,
// the raw value of ConfigKey (nil when the config has none).
func Decode(label string, allotments []byte) (*Record, error) {
	if len(label) > maxRecordBytes {
		return nil, fmt.Errorf("field record: label %s is %d bytes, over the %d byte limit", LabelKey, len(label), maxRecordBytes)
	}
	var probe struct {
		Version int `json:"version"`
	}
	// Only the version is read here; strict checks the whole value.
	if err := json.NewDecoder(strings.NewReader(label)).Decode(&probe); err != nil {
		return nil, fmt.Errorf("field record: label %s is not valid: %w", LabelKey, err)
	}
	var r *Record
	var err error
	switch probe.Version {
	case 1:
		if allotments != nil {
			return nil, fmt.Errorf("field record: label %s is version 1, which keeps its allotments in the label, but the config also has %s", LabelKey, ConfigKey)
		}
		r, err = decodeV1(label)
	case 2:
		r, err = decodeV2(label, allotments)
	default:
		return nil, fmt.Errorf("field record: unsupported version %d (this build reads versions 1 and %d)", probe.Version, RecordVersion)
	}
	if err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// strict decodes exactly one JSON value, refusing unknown fields: the record
// is small and versioned, so a new key means a new version.
func strict(data []byte, what string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("field record: %s is not valid: %w", what, err)
	}
	if dec.More() {
		return fmt.Errorf("field record: %s has trailing data", what)
	}
	return nil
}

func decodeV1(label string) (*Record, error) {
	var v recordV1
	if err := strict([]byte(label), "label "+LabelKey, &v); err != nil {
		return nil, err
	}
	return &Record{Version: 1, BaseLayers: v.BaseLayers, Allotments: v.Allotments}, nil
}

func decodeV2(label string, allotments []byte) (*Record, error) {
	var h header
	if err := strict([]byte(label), "label "+LabelKey, &h); err != nil {
		return nil, err
	}
	if allotments == nil {
		// An image built FROM a field image inherits the label, but a
		// builder that decodes the base config into typed structs (the
		// Dockerfile frontend) drops the top-level key.
		return nil, fmt.Errorf("field record is stale: label %s says %d allotments but the config has no %s key", LabelKey, h.Allotments, ConfigKey)
	}
	if len(allotments) > maxRecordBytes {
		return nil, fmt.Errorf("field record: %s is %d bytes, over the %d byte limit", ConfigKey, len(allotments), maxRecordBytes)
	}
	var entries []entry
	if err := strict(allotments, ConfigKey, &entries); err != nil {
		return nil, err
	}
	if entries == nil {
		return nil, fmt.Errorf("field record: %s must be an array, not null", ConfigKey)
	}
	if len(entries) != h.Allotments {
		return nil, fmt.Errorf("field record: label %s says %d allotments but %s has %d", LabelKey, h.Allotments, ConfigKey, len(entries))
	}
	r := &Record{Version: 2, BaseLayers: h.BaseLayers, Allotments: make([]RecordedAllotment, len(entries))}
	for i, e := range entries {
		r.Allotments[i] = RecordedAllotment{Row: e.Row, Col: e.Col, Layer: h.BaseLayers + i, Dst: e.Dst}
	}
	return r, nil
}

// Validate checks the record on its own: a known version, cells within
// bounds, each cell once, allotments in row-major order on consecutive layers
// right after the base.
func (r *Record) Validate() error {
	if r.Version != 1 && r.Version != RecordVersion {
		return fmt.Errorf("field record: unsupported version %d (this build reads versions 1 and %d)", r.Version, RecordVersion)
	}
	if r.BaseLayers < 0 {
		return fmt.Errorf("field record: baseLayers is %d, must not be negative", r.BaseLayers)
	}
	for i, a := range r.Allotments {
		where := fmt.Sprintf("field record: allotment %d (row %d, col %d)", i, a.Row, a.Col)
		if !a.Cell().Valid() {
			return fmt.Errorf("%s: row and col must be within 0..%d", where, MaxCoordinate)
		}
		if i > 0 {
			switch prev := r.Allotments[i-1].Cell(); {
			case prev == a.Cell():
				return fmt.Errorf("%s: cell recorded twice", where)
			case prev.Compare(a.Cell()) > 0:
				return fmt.Errorf("%s: allotments are not in row-major order", where)
			}
		}
		if want := r.BaseLayers + i; a.Layer != want {
			return fmt.Errorf("%s: layer is %d, want %d (allotment layers follow the base in row-major order)", where, a.Layer, want)
		}
		if len(a.Dst) == 0 {
			return fmt.Errorf("%s: dst is empty", where)
		}
	}
	return nil
}

// HistoryComment is the comment of the history entry that introduces an
// allotment's layer. Check uses it to tie the record to the layers.
func HistoryComment(c Cell) string { return "2dfs allotment " + c.String() }

// Check verifies the record against the image config it was read from: the
// layer count must match, and the history entry that created each allotment
// layer must name that allotment. A record that survived a rebuild on top of
// the image (a FROM of it, a squash) fails here instead of being trusted.
func (r *Record) Check(diffIDs []string, history []ocispec.History) error {
	if len(diffIDs) != r.Layers() {
		return fmt.Errorf("field record is stale: it describes %d layers (%d base + %d allotments) but the image has %d", r.Layers(), r.BaseLayers, len(r.Allotments), len(diffIDs))
	}
	var layerHistory []ocispec.History
	for _, h := range history {
		if !h.EmptyLayer {
			layerHistory = append(layerHistory, h)
		}
	}
	if len(layerHistory) != len(diffIDs) {
		return fmt.Errorf("field record cannot be checked: the config has %d history entries with layers for %d layers", len(layerHistory), len(diffIDs))
	}
	for _, a := range r.Allotments {
		if got, want := layerHistory[a.Layer].Comment, HistoryComment(a.Cell()); got != want {
			return fmt.Errorf("field record is stale: layer %d should hold allotment %s but its history says %q", a.Layer, a.Cell(), got)
		}
	}
	return nil
}

// FromConfig reads and checks the record of a raw image config. It returns
// nil and no error when the config has no record: the image is not a 2DFS
// image. It takes the raw bytes because a version 2 record lives in a
// top-level key that typed decoders (ocispec.Image) drop.
func FromConfig(config []byte) (*Record, error) {
	var cfg struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
		Allotments json.RawMessage   `json:"org.2dfs.field.allotments"`
		RootFS     ocispec.RootFS    `json:"rootfs"`
		History    []ocispec.History `json:"history"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("field record: image config is not valid: %w", err)
	}
	label, ok := cfg.Config.Labels[LabelKey]
	if !ok {
		return nil, nil
	}
	if bytes.Equal(cfg.Allotments, []byte("null")) {
		return nil, fmt.Errorf("field record: %s must be an array, not null", ConfigKey)
	}
	r, err := Decode(label, cfg.Allotments)
	if err != nil {
		return nil, err
	}
	diffIDs := make([]string, len(cfg.RootFS.DiffIDs))
	for i, d := range cfg.RootFS.DiffIDs {
		diffIDs[i] = d.String()
	}
	if err := r.Check(diffIDs, cfg.History); err != nil {
		return nil, err
	}
	return r, nil
}
