package descriptor

import (
	"fmt"
	"strings"

	"github.com/tdfs-kit/tdfs/field"
)

// Position is a 1-based line and column in the descriptor file. The zero
// value means the position is unknown.
type Position struct {
	Line   int
	Column int
}

// Error is one problem in a descriptor, located as precisely as the input
// allows: the file, the line and column, the allotment and the key.
type Error struct {
	File string
	Pos  Position
	// Allotment is the index of the allotment in the file, or -1 when the
	// problem is outside the allotments.
	Allotment int
	// Cell is the allotment's (row, col) when it is known.
	Cell *field.Cell
	// Key is the descriptor key the problem is about ("src[1]", "row"), if any.
	Key string
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Pos.Line, e.Pos.Column)
	}
	b.WriteString(": ")
	if e.Allotment >= 0 {
		fmt.Fprintf(&b, "allotments[%d]", e.Allotment)
		if e.Cell != nil {
			fmt.Fprintf(&b, " (row %d, col %d)", e.Cell.Row, e.Cell.Col)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList holds every problem found in a descriptor, in file order, so a
// user fixes them in one go instead of one build per typo.
type ErrorList []*Error

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	if len(l) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems in the 2DFS descriptor:\n  %s", len(l), strings.Join(lines, "\n  "))
}

// Unwrap lets errors.As find the individual errors.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
