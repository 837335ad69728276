package testenv

import (
	"regexp"
	"strconv"
	"strings"
)

// Vertex is one step of a build as BuildKit's plain progress output
// (--progress plain) shows it.
type Vertex struct {
	ID      string  // the number after '#'
	Name    string  // its first line, e.g. "[2dfs 0,1] copy ..." or "exporting to image"
	Cached  bool    // "#N CACHED"
	Done    bool    // "#N DONE 1.2s"
	Seconds float64 // the time DONE reports
}

var (
	vertexLine = regexp.MustCompile(`^#(\d+) (.*)$`)
	doneLine   = regexp.MustCompile(`^#(\d+) DONE ([0-9.]+)s$`)
	cachedLine = regexp.MustCompile(`^#(\d+) CACHED$`)
)

// Vertices reads plain progress output and returns its vertices in the
// order they first appear.
func Vertices(progress string) []Vertex {
	var out []Vertex
	index := map[string]int{}
	for _, line := range strings.Split(progress, "\n") {
		m := vertexLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		i, seen := index[m[1]]
		if !seen {
			i = len(out)
			index[m[1]] = i
			out = append(out, Vertex{ID: m[1], Name: m[2]})
		}
		v := &out[i]
		if cachedLine.MatchString(line) {
			v.Cached = true
		} else if d := doneLine.FindStringSubmatch(line); d != nil {
			v.Done = true
			v.Seconds, _ = strconv.ParseFloat(d[2], 64)
		}
	}
	return out
}

// AllotmentCell is the cell "row,col" of an allotment vertex, named
// "[2dfs ROW,COL] ...".
func AllotmentCell(name string) (string, bool) {
	cell, ok := strings.CutPrefix(name, "[2dfs ")
	end := strings.Index(cell, "]")
	if !ok || end < 1 || cell[0] < '0' || cell[0] > '9' {
		return "", false
	}
	return cell[:end], true
}

// AllotmentVertices says, for each allotment vertex's cell, whether BuildKit
// took it from cache (for a cell built once per platform: whether any of
// its vertices was cached).
func AllotmentVertices(progress string) map[string]bool {
	out := map[string]bool{}
	for _, v := range Vertices(progress) {
		if cell, ok := AllotmentCell(v.Name); ok {
			out[cell] = out[cell] || v.Cached
		}
	}
	return out
}
