package field

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LabelKey is the image config label that holds a field Record. The format is
// specified in docs/field-record.md; the value's "version" says which revision
// of it a record follows.
const LabelKey = "org.2dfs.field"

// RecordVersion is the version of the record format this package writes and
// the only one it reads.
const RecordVersion = 1

// maxRecordBytes caps the label we are willing to parse. A full field of
// MaxCoordinate² cells is not a realistic image; a few MiB covers tens of
// thousands of allotments with long paths.
const maxRecordBytes = 4 << 20

// Record describes the field of an image: which layers are the base and which
// layer holds each allotment. Digests are not recorded: they live in the
// manifest and config, and a record that repeated them could only go stale.
type Record struct {
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
	// and the config's rootfs.diff_ids.
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

// Encode returns the label value. The output is stable: the same record
// always gives the same bytes.
func (r *Record) Encode() (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// Decode parses and validates a label value.
func Decode(value string) (*Record, error) {
	if len(value) > maxRecordBytes {
		return nil, fmt.Errorf("field record: label %s is %d bytes, over the %d byte limit", LabelKey, len(value), maxRecordBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("field record: label %s is not valid: %w", LabelKey, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("field record: label %s has trailing data", LabelKey)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks the record on its own: a known version, cells within
// bounds, each cell once, allotments in row-major order on consecutive layers
// right after the base.
func (r *Record) Validate() error {
	if r.Version != RecordVersion {
		return fmt.Errorf("field record: unsupported version %d (this build reads version %d)", r.Version, RecordVersion)
	}
	if r.BaseLayers < 0 {
		return fmt.Errorf("field record: baseLayers is %d, must not be negative", r.BaseLayers)
	}
	for i, a := range r.Allotments {
		where := fmt.Sprintf("field record: allotments[%d] (row %d, col %d)", i, a.Row, a.Col)
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

// FromConfig reads and checks the record of an image config. It returns nil
// and no error when the config has no record: the image is not a 2DFS image.
func FromConfig(cfg *ocispec.Image) (*Record, error) {
	value, ok := cfg.Config.Labels[LabelKey]
	if !ok {
		return nil, nil
	}
	r, err := Decode(value)
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
