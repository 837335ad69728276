package field

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A partition tag names part of a 2DFS image: BASETAG--r1.c1.r2.c2 selects
// the allotments in rows r1..r2 and columns c1..c2 (inclusive) of the image
// tagged BASETAG, and more --r1.c1.r2.c2 suffixes add rectangles to the
// selection (a union). See docs/partition.md.

const (
	// SelectionSeparator joins the base tag and each rectangle of a
	// partition tag.
	SelectionSeparator = "--"

	// MaxTagLength is the longest tag OCI allows, and so the longest
	// partition tag.
	MaxTagLength = 128

	// MaxRects bounds the rectangles of one selection. A 128-character tag
	// cannot hold more, but selections built in code are bounded too, so
	// Contains stays cheap.
	MaxRects = 64
)

// Rect is an inclusive rectangle of cells: rows Top..Bottom and columns
// Left..Right. In a tag it is written Top.Left.Bottom.Right.
type Rect struct {
	Top, Left, Bottom, Right int
}

// Contains reports whether c is inside r.
func (r Rect) Contains(c Cell) bool {
	return c.Row >= r.Top && c.Row <= r.Bottom && c.Col >= r.Left && c.Col <= r.Right
}

// String is the tag form of r, without the separator.
func (r Rect) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", r.Top, r.Left, r.Bottom, r.Right)
}

// Validate checks bounds: coordinates within 0..MaxCoordinate, and corners
// given top-left first.
func (r Rect) Validate() error {
	for _, v := range [...]int{r.Top, r.Left, r.Bottom, r.Right} {
		if v < 0 || v > MaxCoordinate {
			return fmt.Errorf("coordinate %d is outside 0..%d", v, MaxCoordinate)
		}
	}
	if r.Top > r.Bottom {
		return fmt.Errorf("rows are inverted: %d > %d", r.Top, r.Bottom)
	}
	if r.Left > r.Right {
		return fmt.Errorf("columns are inverted: %d > %d", r.Left, r.Right)
	}
	return nil
}

func (r Rect) covers(o Rect) bool {
	return r.Top <= o.Top && r.Left <= o.Left && r.Bottom >= o.Bottom && r.Right >= o.Right
}

func (r Rect) compare(o Rect) int {
	return cmp.Or(cmp.Compare(r.Top, o.Top), cmp.Compare(r.Left, o.Left),
		cmp.Compare(r.Bottom, o.Bottom), cmp.Compare(r.Right, o.Right))
}

// Selection is a union of rectangles. The zero value selects nothing.
type Selection struct {
	rects []Rect // canonical: sorted, none covered by another
}

// NewSelection validates rects and returns their union in canonical form.
func NewSelection(rects ...Rect) (Selection, error) {
	if len(rects) == 0 {
		return Selection{}, fmt.Errorf("selection has no rectangles")
	}
	if len(rects) > MaxRects {
		return Selection{}, fmt.Errorf("selection has %d rectangles, the limit is %d", len(rects), MaxRects)
	}
	for _, r := range rects {
		if err := r.Validate(); err != nil {
			return Selection{}, fmt.Errorf("rectangle %s: %w", r, err)
		}
	}
	return Selection{rects: canonical(rects)}, nil
}

// canonical sorts rects and drops those another one covers, so two spellings
// of a selection that differ only in order, repetition or nested rectangles
// have one String. It is not a minimal cover: overlapping rectangles that do
// not nest both stay.
func canonical(rects []Rect) []Rect {
	sorted := slices.Clone(rects)
	slices.SortFunc(sorted, Rect.compare)
	sorted = slices.Compact(sorted)
	out := sorted[:0:0]
	for i, r := range sorted {
		covered := false
		for j, o := range sorted {
			if i != j && o.covers(r) && o != r {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

// Rects returns the rectangles in canonical order.
func (s Selection) Rects() []Rect { return slices.Clone(s.rects) }

// IsZero reports whether s selects nothing (it was not built by NewSelection
// or ParseTag).
func (s Selection) IsZero() bool { return len(s.rects) == 0 }

// Contains reports whether any rectangle of s contains c.
func (s Selection) Contains(c Cell) bool {
	for _, r := range s.rects {
		if r.Contains(c) {
			return true
		}
	}
	return false
}

// String is the canonical tag suffix of s without the leading separator,
// e.g. "0.0.1.1--3.3.3.3". It is what partitions record as their selection.
func (s Selection) String() string {
	parts := make([]string, len(s.rects))
	for i, r := range s.rects {
		parts[i] = r.String()
	}
	return strings.Join(parts, SelectionSeparator)
}

// Tag returns the canonical partition tag of s on base.
func (s Selection) Tag(base string) string {
	return base + SelectionSeparator + s.String()
}

// TagError is a partition tag that does not parse. Part is the offending
// piece as written, e.g. "--1.2.3", or the whole tag when the problem is not
// local to one piece.
type TagError struct {
	Tag    string
	Part   string
	Reason string
}

func (e *TagError) Error() string {
	if e.Part == "" || e.Part == e.Tag {
		return fmt.Sprintf("partition tag %q: %s", e.Tag, e.Reason)
	}
	return fmt.Sprintf("partition tag %q: %s: %s", e.Tag, e.Part, e.Reason)
}

// IsPartitionTag reports whether tag has the shape of a partition tag, valid
// or not: its last "--" piece is four dot-separated fields, or digits and dots
// with at least one dot. Those tags are reserved for partitions: the proxy
// answers them (or rejects them as malformed) and never forwards them
// upstream. A tag like "app--rc.1" or "my--tag" is an ordinary tag.
func IsPartitionTag(tag string) bool {
	i := strings.LastIndex(tag, SelectionSeparator)
	return i >= 0 && looksLikeRect(tag[i+len(SelectionSeparator):])
}

func looksLikeRect(piece string) bool {
	if piece == "" || !strings.Contains(piece, ".") {
		return false
	}
	if strings.Count(piece, ".") == 3 {
		return true
	}
	return strings.Trim(piece, "0123456789.") == ""
}

// ParseTag splits a partition tag into its base tag and selection. It reads
// from the right, taking rectangle-shaped pieces (see IsPartitionTag) until
// one is not; the rest is the base tag, which may itself contain "--" but
// must not end in "-" (ambiguous: "v1----0.0.0.0").
func ParseTag(tag string) (base string, sel Selection, err error) {
	fail := func(part, format string, args ...any) (string, Selection, error) {
		return "", Selection{}, &TagError{Tag: tag, Part: part, Reason: fmt.Sprintf(format, args...)}
	}
	if len(tag) > MaxTagLength {
		return fail(tag, "tag is %d characters, the limit is %d", len(tag), MaxTagLength)
	}
	if !IsPartitionTag(tag) {
		return fail(tag, "no --r1.c1.r2.c2 selection at the end")
	}
	var rects []Rect
	rest := tag
	for {
		i := strings.LastIndex(rest, SelectionSeparator)
		if i < 0 || !looksLikeRect(rest[i+len(SelectionSeparator):]) {
			break
		}
		piece := rest[i+len(SelectionSeparator):]
		part := SelectionSeparator + piece
		r, err := parseRect(piece)
		if err != nil {
			return fail(part, "%v", err)
		}
		if len(rects) == MaxRects {
			return fail(tag, "more than %d rectangles", MaxRects)
		}
		rects = append(rects, r)
		rest = rest[:i]
	}
	if strings.HasSuffix(rest, "-") {
		// "v1----0.0.0.0" reads as base "v1--", but is as likely a
		// mistyped "v1--0.0.0.0": refuse rather than guess.
		return fail(rest, "base tag ends in \"-\" right before the selection, which is ambiguous")
	}
	if !validTag(rest) {
		return fail(rest, "base tag is not a valid tag (want [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127})")
	}
	slices.Reverse(rects) // back to the order written; canonical sorts anyway
	sel, err = NewSelection(rects...)
	if err != nil {
		return fail(tag, "%v", err)
	}
	return rest, sel, nil
}

func parseRect(piece string) (Rect, error) {
	fields := strings.Split(piece, ".")
	if len(fields) != 4 {
		return Rect{}, fmt.Errorf("a rectangle is four coordinates r1.c1.r2.c2, this has %d", len(fields))
	}
	var v [4]int
	for i, f := range fields {
		n, err := parseCoordinate(f)
		if err != nil {
			return Rect{}, err
		}
		v[i] = n
	}
	r := Rect{Top: v[0], Left: v[1], Bottom: v[2], Right: v[3]}
	if err := r.Validate(); err != nil {
		return Rect{}, err
	}
	return r, nil
}

// parseCoordinate accepts plain decimal: no sign, no leading zeros, no
// spaces, so each selection has one spelling and "+1" or "01" cannot alias
// a canonical tag.
func parseCoordinate(f string) (int, error) {
	switch {
	case f == "":
		return 0, fmt.Errorf("empty coordinate")
	case strings.Trim(f, "0123456789") != "":
		return 0, fmt.Errorf("coordinate %q is not a non-negative decimal number", f)
	case len(f) > 1 && f[0] == '0':
		return 0, fmt.Errorf("coordinate %q has a leading zero", f)
	case len(f) > len(strconv.Itoa(MaxCoordinate)):
		return 0, fmt.Errorf("coordinate %s is over %d", f, MaxCoordinate)
	}
	n, err := strconv.Atoi(f)
	if err != nil {
		return 0, fmt.Errorf("coordinate %q: %w", f, err)
	}
	if n > MaxCoordinate {
		return 0, fmt.Errorf("coordinate %d is over %d", n, MaxCoordinate)
	}
	return n, nil
}

// validTag reports whether s matches the OCI tag grammar
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(s string) bool {
	if s == "" || len(s) > MaxTagLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidTag reports whether s is a valid OCI tag.
func ValidTag(s string) bool { return validTag(s) }
