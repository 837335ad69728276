package frontend

import (
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

func TestNoCache(t *testing.T) {
	planned := []descriptor.PlannedAllotment{{Cell: field.Cell{Row: 0, Col: 0}}, {Cell: field.Cell{Row: 1, Col: 2}}, {Cell: field.Cell{Row: 10, Col: 0}}}
	all := []field.Cell{{Row: 0, Col: 0}, {Row: 1, Col: 2}, {Row: 10, Col: 0}}
	for _, c := range []struct {
		opts map[string]string
		want []bool // per cell of all
	}{
		{nil, []bool{false, false, false}},
		{map[string]string{"no-cache": ""}, []bool{true, true, true}},
		{map[string]string{"no-cache": "1.2"}, []bool{false, true, false}},
		{map[string]string{"no-cache": "10.0, 0.0"}, []bool{true, false, true}},
	} {
		f, err := noCache(c.opts, planned)
		if err != nil {
			t.Fatalf("%v: %v", c.opts, err)
		}
		for i, cell := range all {
			if f(cell) != c.want[i] {
				t.Errorf("%v: cell %s no-cache = %v, want %v", c.opts, cell, f(cell), c.want[i])
			}
		}
	}
	for v, want := range map[string]string{
		"1,2":    `no-cache=1,2: "1": want an allotment's cell as row.col`,
		"1.2,x":  `"x": want an allotment's cell as row.col`,
		"3.3":    `no-cache=3.3: "3.3": the field has no allotment at row 3, col 3`,
		"-1.0":   `"-1.0": want an allotment's cell as row.col with rows and columns from 0 to 1023`,
		"1.2.3":  `"1.2.3": want an allotment's cell`,
		"+1.2":   `"+1.2": want an allotment's cell`,
		"stage1": `"stage1": want an allotment's cell as row.col, such as 1.2`,
	} {
		_, err := noCache(map[string]string{"no-cache": v}, planned)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no-cache=%s: error %v, want %q", v, err, want)
		}
	}
}
