// Package field is the shared domain model of 2DFS: a field of allotments
// addressed by (row, col), and the record of a field that our images carry in
// their config. It has no BuildKit imports on purpose: the registry proxy uses
// it and must stay small.
package field

import (
	"cmp"
	"fmt"
)

// MaxCoordinate is the largest row or column index a field may use. Rows and
// columns are dense in the reference wire format (a field with a cell at
// (1023, 1023) is a million-cell matrix), so the bound keeps every
// representation of a field small. It is part of the public contract: the
// descriptor parser and the partition selection parser both enforce it.
const MaxCoordinate = 1023

// Cell is the address of an allotment in a field.
type Cell struct {
	Row int `json:"row"`
	Col int `json:"col"`
}

func (c Cell) String() string { return fmt.Sprintf("%d,%d", c.Row, c.Col) }

// Compare orders cells row-major: by row, then by column. This is the
// canonical order of allotment layers in an image.
func (c Cell) Compare(o Cell) int {
	if r := cmp.Compare(c.Row, o.Row); r != 0 {
		return r
	}
	return cmp.Compare(c.Col, o.Col)
}

// Valid reports whether both coordinates are within [0, MaxCoordinate].
func (c Cell) Valid() bool {
	return c.Row >= 0 && c.Col >= 0 && c.Row <= MaxCoordinate && c.Col <= MaxCoordinate
}
