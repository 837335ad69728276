package descriptor

import (
	"encoding/json"
	"path"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is
// valid and survives a round trip through JSON. Seeds live in
// testdata/fuzz/FuzzParse; run with: go test -fuzz FuzzParse ./descriptor
func FuzzParse(f *testing.F) {
	f.Add("2dfs.json", []byte(`{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0}]}`))
	f.Add("2dfs.yaml", []byte("allotments:\n  - {src: [a, b], dst: [/a, /b], row: 1, col: 2}\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		d, err := Parse(name, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), name) && !strings.Contains(err.Error(), "problems in the 2DFS descriptor") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		seen := map[[2]int]bool{}
		type entry struct {
			Src []string `json:"src"`
			Dst []string `json:"dst"`
			Row int      `json:"row"`
			Col int      `json:"col"`
		}
		var entries []entry
		for _, a := range d.Allotments {
			if !a.Cell.Valid() || seen[[2]int{a.Cell.Row, a.Cell.Col}] {
				t.Fatalf("accepted bad cell %v", a.Cell)
			}
			seen[[2]int{a.Cell.Row, a.Cell.Col}] = true
			if len(a.Src) == 0 || len(a.Src) != len(a.Dst) {
				t.Fatalf("accepted src %q dst %q", a.Src, a.Dst)
			}
			for _, dst := range a.Dst {
				if !path.IsAbs(dst) || path.Clean(dst) == "/" {
					t.Fatalf("accepted dst %q", dst)
				}
			}
			for _, src := range a.Src {
				if path.IsAbs(src) || strings.HasPrefix(path.Clean(src), "..") && path.Clean(src) != ".." && strings.HasPrefix(path.Clean(src), "../") {
					t.Fatalf("accepted src %q", src)
				}
			}
			entries = append(entries, entry{a.Src, a.Dst, a.Cell.Row, a.Cell.Col})
		}
		out, err := json.Marshal(map[string]any{"base": d.Base, "allotments": entries})
		if d.Base == "" {
			out, err = json.Marshal(map[string]any{"allotments": entries})
		}
		if err != nil {
			t.Fatal(err)
		}
		d2, err := Parse("roundtrip.json", out)
		if err != nil {
			t.Fatalf("round trip of %s failed: %v", out, err)
		}
		for i := range d.Allotments {
			a, b := d.Allotments[i], d2.Allotments[i]
			if a.Cell != b.Cell || !reflect.DeepEqual(a.Src, b.Src) || !reflect.DeepEqual(a.Dst, b.Dst) {
				t.Fatalf("round trip changed allotment %d: %+v vs %+v", i, a, b)
			}
		}
	})
}
