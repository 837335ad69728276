package descriptor

import (
	"fmt"
	"strings"

	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/internal/printable"
)

// MaxErrors is how many problems an ErrorList spells out; the rest are
// counted. A user fixes the first ones first, and an error far over
// BuildKit's message size would reach a gateway user as "exit code: 1".
const MaxErrors = 50

// maxErrorText bounds the listed problems' text in the same spirit, for
// problems that quote long values.
const maxErrorText = 16 << 10

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
	// Values are quoted where they are echoed; this catches what a library
	// message or a file name carries, so no terminal gets raw escapes.
	return printable.String(b.String())
}

// ErrorList holds the problems found in a descriptor, in the order found,
// so a user fixes them in one go instead of one build per typo. Past
// MaxErrors, problems are only counted.
type ErrorList struct {
	Errors []*Error
	// More counts the problems found past the first MaxErrors.
	More int
}

// Len is the number of problems found, listed or not.
func (l *ErrorList) Len() int { return len(l.Errors) + l.More }

func (l *ErrorList) Error() string {
	if l.Len() == 1 {
		return l.Errors[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems in the 2DFS descriptor:", l.Len())
	for i, e := range l.Errors {
		if b.Len() > maxErrorText {
			fmt.Fprintf(&b, "\n  and %d more", l.Len()-i)
			return b.String()
		}
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	if l.More > 0 {
		fmt.Fprintf(&b, "\n  and %d more", l.More)
	}
	return b.String()
}

// Unwrap lets errors.As find the individual errors.
func (l *ErrorList) Unwrap() []error {
	errs := make([]error, len(l.Errors))
	for i, e := range l.Errors {
		errs[i] = e
	}
	return errs
}

func (l *ErrorList) err() error {
	if l.Len() == 0 {
		return nil
	}
	return l
}
