package frontend

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

// noCacheKey is BuildKit's frontend opt for builds that must not use the
// cache: `2dfs build --no-cache`, buildctl --opt no-cache=..., docker buildx
// build --no-cache and --no-cache-filter all send it.
const noCacheKey = "no-cache"

// noCache reads the no-cache opt as the Dockerfile frontend (dockerui) does:
// absent, every allotment may come from the cache; present and empty, none
// may; otherwise it is a comma-separated list naming the allotments to
// re-run. Allotments are named by their cell as "row.col" ("1.2"), since
// BuildKit clients split the list on commas. A name that is not a cell of
// this field is an error, so a typo does not silently use the cache.
func noCache(opts map[string]string, planned []descriptor.PlannedAllotment) (func(field.Cell) bool, error) {
	v, ok := opts[noCacheKey]
	if !ok {
		return func(field.Cell) bool { return false }, nil
	}
	if strings.TrimSpace(v) == "" {
		return func(field.Cell) bool { return true }, nil
	}
	inField := map[field.Cell]bool{}
	for _, p := range planned {
		inField[p.Cell] = true
	}
	cells := map[field.Cell]bool{}
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		cell, err := parseCellName(name)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %q: %v", noCacheKey, v, name, err)
		}
		if !inField[cell] {
			return nil, fmt.Errorf("%s=%s: %q: the field has no allotment at row %d, col %d", noCacheKey, v, name, cell.Row, cell.Col)
		}
		cells[cell] = true
	}
	return func(c field.Cell) bool { return cells[c] }, nil
}

// parseCellName reads "row.col".
func parseCellName(name string) (field.Cell, error) {
	r, c, ok := strings.Cut(name, ".")
	if !ok {
		return field.Cell{}, fmt.Errorf("want an allotment's cell as row.col, such as 1.2 (separate cells with commas)")
	}
	row, err1 := strconv.Atoi(r)
	col, err2 := strconv.Atoi(c)
	cell := field.Cell{Row: row, Col: col}
	if err1 != nil || err2 != nil || !cell.Valid() || strings.HasPrefix(r, "+") || strings.HasPrefix(c, "+") {
		return field.Cell{}, fmt.Errorf("want an allotment's cell as row.col with rows and columns from 0 to %d", field.MaxCoordinate)
	}
	return cell, nil
}
