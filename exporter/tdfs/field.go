// Package tdfs reads and writes the reference 2DFS wire format (the tdfs
// builder's and the 2DFS registry's, see docs/reference-format.md): it parses
// and encodes field blobs, converts our field images to that format, and cuts
// partitions of reference-format images that look like the ones
// exporter/partition cuts of ours.
//
// Like exporter/partition it is pure: bytes in, bytes out, no I/O, the same
// input always gives the same output. Callers (the CLI, the registry proxy)
// fetch and store blobs. It has no BuildKit imports on purpose.
package tdfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/exporter/internal/rawjson"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

// MediaTypeField is the media type of the manifest "layer" that holds the
// field blob.
const MediaTypeField = "application/vnd.oci.image.layer.v1.2dfs.field"

// AnnotationImageName is the index annotation the reference builder uses to
// name an image (REGISTRY/REPOSITORY:TAG).
const AnnotationImageName = "2dfs.image.name"

// MaxFieldBytes caps the field blobs we parse (partition.Limits holds it
// with the other caps). A cell takes about 170 bytes,
// so this is about 100,000 cells: far more than a real field, far less than
// the million a hostile blob with rows of 1024 cells could claim.
const MaxFieldBytes = partition.MaxFieldBytes

// ErrMalformedField wraps every error about a field blob's content.
var ErrMalformedField = errors.New("malformed 2DFS field")

// Entry is an entry of a field blob: a non-empty cell and the allotment blob
// it names (the reference format keeps allotments as blobs outside the
// manifest).
type Entry struct {
	Row, Col int
	// Digest is the allotment blob's digest (of the gzip tar).
	Digest digest.Digest
	// DiffID is the digest of the uncompressed tar.
	DiffID digest.Digest
}

// Cell returns the allotment's address.
func (a Entry) Cell() field.Cell { return field.Cell{Row: a.Row, Col: a.Col} }

// Field is a parsed reference field: its non-empty cells in row-major order.
// Holes and trailing empty cells carry no information, so a Field does not
// keep them; Encode writes the canonical ragged layout for its cells.
type Field struct {
	Entries []Entry
}

// wire types mirror the reference JSON exactly, keys in the order the
// reference builder writes them.
type wireField struct {
	Rows    []wireRow `json:"rows"`
	TotRows int       `json:"rows_size"`
	Owner   string    `json:"owner"`
}

type wireRow struct {
	Allotments []wireCell `json:"allotments"`
	TotCells   int        `json:"allotments_size"`
}

type wireCell struct {
	Row    int    `json:"row"`
	Col    int    `json:"col"`
	Digest string `json:"digest"`
	DiffID string `json:"diffid"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedField, fmt.Sprintf(format, args...))
}

// ParseField parses and validates a field blob. It is stricter than the
// reference readers, which ignore unknown keys and the *_size keys: a typo
// such as "diffID" would make them see an empty cell, so here it is an error.
func ParseField(data []byte) (*Field, error) {
	if len(data) > MaxFieldBytes {
		return nil, malformed("blob is %d bytes, over the %d byte limit", len(data), MaxFieldBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wireField
	if err := dec.Decode(&w); err != nil {
		return nil, malformed("not valid field JSON: %v", err)
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) != 0 {
		return nil, malformed("trailing data after the field object")
	}
	if w.Rows == nil {
		return nil, malformed(`no "rows" array`)
	}
	if w.TotRows != len(w.Rows) {
		return nil, malformed("rows_size is %d but there are %d rows", w.TotRows, len(w.Rows))
	}
	if len(w.Rows) > field.MaxCoordinate+1 {
		return nil, malformed("%d rows, the limit is %d", len(w.Rows), field.MaxCoordinate+1)
	}
	f := &Field{}
	for r, row := range w.Rows {
		if row.TotCells != len(row.Allotments) {
			return nil, malformed("rows[%d]: allotments_size is %d but there are %d allotments", r, row.TotCells, len(row.Allotments))
		}
		if len(row.Allotments) > field.MaxCoordinate+1 {
			return nil, malformed("rows[%d]: %d cells, the limit is %d", r, len(row.Allotments), field.MaxCoordinate+1)
		}
		for c, cell := range row.Allotments {
			where := fmt.Sprintf("rows[%d].allotments[%d]", r, c)
			if cell.Row != r || cell.Col != c {
				return nil, malformed("%s says row %d, col %d: cells must be laid out densely, row r's cell c at rows[r].allotments[c]", where, cell.Row, cell.Col)
			}
			if cell.Digest == "" && cell.DiffID == "" {
				continue // a hole
			}
			d, err := parseHex(cell.Digest)
			if err != nil {
				return nil, malformed("%s (cell %d,%d): digest: %v", where, r, c, err)
			}
			id, err := parseHex(cell.DiffID)
			if err != nil {
				return nil, malformed("%s (cell %d,%d): diffid: %v", where, r, c, err)
			}
			f.Entries = append(f.Entries, Entry{Row: r, Col: c, Digest: d, DiffID: id})
		}
	}
	return f, nil
}

// parseHex reads a bare sha256 hex digest, the only form the reference tools
// write and the only one they read back correctly.
func parseHex(s string) (digest.Digest, error) {
	switch {
	case s == "":
		return "", errors.New("empty (a cell is empty only when both digest and diffid are)")
	case len(s) > len("sha256:") && s[:len("sha256:")] == "sha256:":
		return "", fmt.Errorf("%q has a sha256: prefix; the reference format wants bare hex", s)
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, s)
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("%q is not a sha256 hex digest: %v", s, err)
	}
	return d, nil
}

// NewField validates allotments (sha256 digests, cells in bounds, each cell
// once) and returns them as a Field in row-major order.
func NewField(allotments []Entry) (*Field, error) {
	sorted := slices.Clone(allotments)
	slices.SortStableFunc(sorted, func(a, b Entry) int { return a.Cell().Compare(b.Cell()) })
	for i, a := range sorted {
		if !a.Cell().Valid() {
			return nil, fmt.Errorf("allotment %s: row and col must be within 0..%d", a.Cell(), field.MaxCoordinate)
		}
		if i > 0 && sorted[i-1].Cell() == a.Cell() {
			return nil, fmt.Errorf("allotment %s: cell given twice", a.Cell())
		}
		for _, d := range []digest.Digest{a.Digest, a.DiffID} {
			if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
				return nil, fmt.Errorf("allotment %s: %q is not a sha256 digest (the reference format has only sha256)", a.Cell(), d)
			}
		}
	}
	return &Field{Entries: sorted}, nil
}

// Encode writes the field blob exactly as the reference builder would for
// the same cells: rows up to the last non-empty one, each row up to its last
// non-empty cell, holes as empty strings, bare hex digests.
func (f *Field) Encode() []byte {
	w := wireField{Rows: []wireRow{}}
	for _, a := range f.Entries {
		for len(w.Rows) <= a.Row {
			w.Rows = append(w.Rows, wireRow{Allotments: []wireCell{}})
		}
		row := &w.Rows[a.Row]
		for len(row.Allotments) <= a.Col {
			row.Allotments = append(row.Allotments, wireCell{Row: a.Row, Col: len(row.Allotments)})
		}
		row.Allotments[a.Col].Digest = a.Digest.Encoded()
		row.Allotments[a.Col].DiffID = a.DiffID.Encoded()
	}
	for i := range w.Rows {
		w.Rows[i].TotCells = len(w.Rows[i].Allotments)
	}
	w.TotRows = len(w.Rows)
	b, err := rawjson.Marshal(w)
	if err != nil {
		panic(err) // plain structs of strings and ints always marshal
	}
	return b
}

// Lookup returns the allotment at c.
func (f *Field) Lookup(c field.Cell) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(f.Entries, c, func(a Entry, c field.Cell) int { return a.Cell().Compare(c) })
	if !ok {
		return Entry{}, false
	}
	return f.Entries[i], true
}

// Select returns the allotments sel contains, in row-major order, each once.
func (f *Field) Select(sel field.Selection) []Entry {
	var out []Entry
	for _, a := range f.Entries {
		if sel.Contains(a.Cell()) {
			out = append(out, a)
		}
	}
	return out
}

// Size returns the number of rows and the length of the longest row: the
// extent of the grid a viewer draws.
func (f *Field) Size() (rows, cols int) {
	for _, a := range f.Entries {
		rows = max(rows, a.Row+1)
		cols = max(cols, a.Col+1)
	}
	return rows, cols
}
