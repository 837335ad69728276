package descriptor

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/field"
)

func TestParseValid(t *testing.T) {
	in := `{
  "syntax": "registry.example/2dfs/frontend:v1",
  "base": "registry.example/base:v1",
  "allotments": [
    {"src": "models/split1", "dst": "/model/split1", "row": 1, "col": 0},
    {"src": ["a.bin", "b.bin"], "dst": ["/data/a.bin", "/data/b.bin"], "row": 0, "col": 0}
  ]
}`
	d, err := Parse("2dfs.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d.Syntax != "registry.example/2dfs/frontend:v1" || d.Base != "registry.example/base:v1" {
		t.Fatalf("syntax/base = %q/%q", d.Syntax, d.Base)
	}
	if len(d.Allotments) != 2 {
		t.Fatalf("got %d allotments", len(d.Allotments))
	}
	a := d.Allotments[1]
	if a.Index != 1 || a.Cell != (field.Cell{Row: 0, Col: 0}) || !reflect.DeepEqual(a.Src, []string{"a.bin", "b.bin"}) || !reflect.DeepEqual(a.Dst, []string{"/data/a.bin", "/data/b.bin"}) {
		t.Fatalf("allotment 1 = %+v", a)
	}
	if a.Pos != (Position{Line: 6, Column: 5}) || a.SrcPos[1] != (Position{Line: 6, Column: 23}) {
		t.Fatalf("positions = %+v %+v", a.Pos, a.SrcPos)
	}
	if got := d.Sources(); !reflect.DeepEqual(got, []string{"a.bin", "b.bin", "models/split1"}) {
		t.Fatalf("Sources() = %v", got)
	}
}

func TestParseYAML(t *testing.T) {
	in := "# syntax=registry.example/2dfs/frontend:v1\n" +
		"allotments:\n" +
		"  - src: models\n" +
		"    dst: /models\n" +
		"    row: 0\n" +
		"    col: 2\n"
	d, err := Parse("2dfs.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Allotments) != 1 || d.Allotments[0].Cell != (field.Cell{Row: 0, Col: 2}) || d.Base != "" {
		t.Fatalf("got %+v", d)
	}
}

func TestParseEmptyAllotments(t *testing.T) {
	d, err := Parse("2dfs.json", []byte(`{"allotments": []}`))
	if err != nil || len(d.Allotments) != 0 {
		t.Fatalf("got %+v, %v", d, err)
	}
}

// Every bad descriptor the issue lists, with its exact message.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, in, want string
	}{
		{"json syntax", "2dfs.json", "{\"allotments\": [\n  {\"src\": \"a\", \"dst\": \"/a\", \"row\": 0, \"col\": 1,}\n]}",
			`2dfs.json:2:49: invalid JSON: invalid character '}' looking for beginning of object key string`},
		{"trailing data", "2dfs.json", `{"allotments": []} x`,
			`2dfs.json:1:20: invalid JSON: unexpected data after the top-level object`},
		{"yaml syntax", "2dfs.yaml", "allotments:\n  - src: a\n   dst: /a\n",
			`2dfs.yaml:1:1: invalid YAML: did not find expected '-' indicator`},
		{"empty file", "2dfs.json", "  \n",
			`2dfs.json: the descriptor is empty; it needs at least {"allotments": []}`},
		{"not an object", "2dfs.json", `[]`,
			`2dfs.json:1:1: the descriptor must be an object with an "allotments" list`},
		{"no allotments key", "2dfs.json", `{"base": "x"}`,
			`2dfs.json:1:1: missing key "allotments" (use [] for an image with no allotments)`},
		{"unknown top-level key", "2dfs.json", `{"allotment": []}`,
			`2 problems in the 2DFS descriptor:
  2dfs.json:1:2: "allotment": unknown key in the descriptor; did you mean "allotments"? (known keys: syntax, base, config, dependencies, allotments)
  2dfs.json:1:1: missing key "allotments" (use [] for an image with no allotments)`},
		{"typo colum", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0, "colum": 1}]}`,
			`2dfs.json:1:63: allotments[0] (row 0, col 0): "colum": unknown key in an allotment; did you mean "col"? (known keys: src, dst, row, col, checksum, authSecret, from, unpinned)`},
		{"typo instead of key", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "colum": 1}]}`,
			`2 problems in the 2DFS descriptor:
  2dfs.json:1:53: allotments[0]: "colum": unknown key in an allotment; did you mean "col"? (known keys: src, dst, row, col, checksum, authSecret, from, unpinned)
  2dfs.json:1:17: allotments[0]: missing key "col"`},
		{"duplicate key", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0, "row": 1}]}`,
			`2dfs.json:1:63: allotments[0] (row 0, col 0): row: key given twice (first at line 1)`},
		{"negative row", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": -1, "col": 0}]}`,
			`2dfs.json:1:50: allotments[0]: row: -1 is out of range; rows and columns go from 0 to 1023`},
		{"absurd col", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 1024}]}`,
			`2dfs.json:1:60: allotments[0]: col: 1024 is out of range; rows and columns go from 0 to 1023`},
		{"huge col", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 99999999999999999999999}]}`,
			`2dfs.json:1:60: allotments[0]: col: 99999999999999999999999 is out of range; rows and columns go from 0 to 1023`},
		{"string row", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": "0", "col": 1.5}]}`,
			`2 problems in the 2DFS descriptor:
  2dfs.json:1:50: allotments[0]: row: must be an integer from 0 to 1023, got "0"
  2dfs.json:1:62: allotments[0]: col: must be an integer from 0 to 1023, got 1.5`},
		{"same cell twice", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0}, {"src": "b", "dst": "/b", "row": 0, "col": 0}]}`,
			`2dfs.json:1:64: allotments[1] (row 0, col 0): cell (row 0, col 0) is already used by allotments[0]; each cell holds one allotment`},
		{"lengths differ", "2dfs.json", `{"allotments": [{"src": ["a", "b"], "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:44: allotments[0] (row 0, col 0): dst: lists 1 paths but src lists 2; each src needs its own dst`},
		{"dst relative", "2dfs.json", `{"allotments": [{"src": "a", "dst": "a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "a": must be an absolute path in the image`},
		{"dst root", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/", "row": 0, "col": 0}]}`,
			`2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "/": must not be / itself; name a file or directory under it`},
		{"dst root with dots", "2dfs.json", `{"allotments": [{"src": "a", "dst": "//.", "row": 0, "col": 0}]}`,
			`2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "//.": must not be / itself; name a file or directory under it`},
		{"dst dotdot", "2dfs.json", `{"allotments": [{"src": "a", "dst": "/x/../a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "/x/../a": must not contain ".."`},
		{"src absolute", "2dfs.json", `{"allotments": [{"src": "/etc/passwd", "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "/etc/passwd": must be relative to the build context, not absolute`},
		{"src escapes", "2dfs.json", `{"allotments": [{"src": "a/../../b", "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "a/../../b": escapes the build context`},
		{"src dotdot", "2dfs.json", `{"allotments": [{"src": "..", "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "..": escapes the build context`},
		{"src dotdot slash", "2dfs.json", `{"allotments": [{"src": "./../", "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "./../": escapes the build context`},
		{"src wildcard", "2dfs.json", `{"allotments": [{"src": "*.bin", "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "*.bin": wildcards are not supported; list the files or name a directory`},
		{"src empty list", "2dfs.json", `{"allotments": [{"src": [], "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src: must not be an empty list`},
		{"src number", "2dfs.json", `{"allotments": [{"src": ["a", 3], "dst": ["/a", "/b"], "row": 0, "col": 0}]}`,
			`2dfs.json:1:31: allotments[0] (row 0, col 0): src[1]: must be a string path, got 3`},
		{"missing src", "2dfs.json", `{"allotments": [{"dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:17: allotments[0] (row 0, col 0): missing key "src"`},
		{"allotment not object", "2dfs.json", `{"allotments": ["a"]}`,
			`2dfs.json:1:17: allotments[0]: must be an object with src, dst, row and col`},
		{"empty base", "2dfs.json", `{"base": "", "allotments": []}`,
			`2dfs.json:1:10: base: must name an image (leave the key out for scratch)`},
		{"yaml unknown key with line", "2dfs.yml", "allotments:\n  - src: a\n    dst: /a\n    row: 0\n    col: 0\n    size: 3\n",
			`2dfs.yml:6:5: allotments[0] (row 0, col 0): "size": unknown key in an allotment (known keys: src, dst, row, col, checksum, authSecret, from, unpinned)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.file, []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n%s\nwant:\n%s", err, tc.want)
			}
			var de *Error
			if !errors.As(err, &de) || de.File != tc.file {
				t.Fatalf("error does not unwrap to a located *Error: %#v", err)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse("2dfs.json", []byte(strings.Repeat(" ", MaxSize+1)))
	if err == nil || !strings.Contains(err.Error(), "over the 4194304 byte limit") {
		t.Fatalf("got %v", err)
	}
}

func mustParse(t *testing.T, in string) *Descriptor {
	t.Helper()
	d, err := Parse("2dfs.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// statMap is a build context: path → is a directory (else a regular file).
func statMap(m map[string]bool) StatFunc {
	return func(src string) (fs.FileMode, error) {
		dir, ok := m[src]
		if !ok {
			return 0, fmt.Errorf("stat %s: %w", src, fs.ErrNotExist)
		}
		if dir {
			return fs.ModeDir | 0o755, nil
		}
		return 0o644, nil
	}
}

func TestPlan(t *testing.T) {
	d := mustParse(t, `{"allotments": [
		{"src": "models", "dst": "/models/", "row": 1, "col": 0},
		{"src": ["./a.bin", "b.bin"], "dst": ["/data/", "/data/b"], "row": 0, "col": 1},
		{"src": "c.bin", "dst": "/data/c.bin", "row": 0, "col": 0}
	]}`)
	got, err := d.Plan(statMap(map[string]bool{"models": true, "a.bin": false, "b.bin": false, "c.bin": false}))
	if err != nil {
		t.Fatal(err)
	}
	want := []PlannedAllotment{
		{Index: 2, Cell: field.Cell{Row: 0, Col: 0}, Copies: []Copy{{Src: "c.bin", Dst: "/data/c.bin"}}},
		{Index: 1, Cell: field.Cell{Row: 0, Col: 1}, Copies: []Copy{{Src: "a.bin", Dst: "/data/a.bin"}, {Src: "b.bin", Dst: "/data/b"}}},
		{Index: 0, Cell: field.Cell{Row: 1, Col: 0}, Copies: []Copy{{Src: "models", Dst: "/models", Dir: true}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%+v\nwant\n%+v", got, want)
	}
}

func TestPlanErrors(t *testing.T) {
	ctx := statMap(map[string]bool{"models": true, "models/x": false, "a.bin": false, "b.bin": false})
	for _, tc := range []struct{ name, in, want string }{
		{"missing src", `{"allotments": [{"src": "nope.bin", "dst": "/a", "row": 0, "col": 0}]}`,
			`2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "nope.bin": not found in the build context (is it excluded by .dockerignore, or outside the context directory?)`},
		{"same dst", `{"allotments": [{"src": "a.bin", "dst": "/a", "row": 0, "col": 0}, {"src": "b.bin", "dst": "/a", "row": 0, "col": 1}]}`,
			`2dfs.json:1:92: allotments[1] (row 0, col 1): dst[0] "/a": writes the same path as allotments[0] (row 0, col 0) dst[0]; allotments must not overlap`},
		{"inside a directory allotment", `{"allotments": [{"src": "models", "dst": "/m", "row": 0, "col": 0}, {"src": "b.bin", "dst": "/m/sub/b", "row": 1, "col": 0}]}`,
			`2dfs.json:1:93: allotments[1] (row 1, col 0): dst[0] "/m/sub/b": writes inside /m as allotments[0] (row 0, col 0) dst[0]; allotments must not overlap`},
		{"file into a dir via slash collides", `{"allotments": [{"src": "a.bin", "dst": "/d/", "row": 0, "col": 0}, {"src": "b.bin", "dst": "/d/a.bin", "row": 0, "col": 1}]}`,
			`2dfs.json:1:93: allotments[1] (row 0, col 1): dst[0] "/d/a.bin": writes the same path as allotments[0] (row 0, col 0) dst[0]; allotments must not overlap`},
		{"within one allotment", `{"allotments": [{"src": ["a.bin", "b.bin"], "dst": ["/x", "/x/y"], "row": 0, "col": 0}]}`,
			`2dfs.json:1:59: allotments[0] (row 0, col 0): dst[1] "/x/y": writes inside /x as allotments[0] (row 0, col 0) dst[0]; allotments must not overlap`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustParse(t, tc.in).Plan(ctx)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
}

// Siblings that only share parent directories do not overlap, and a path
// that merely starts with the same letters is no descendant.
func TestPlanNoFalseOverlap(t *testing.T) {
	d := mustParse(t, `{"allotments": [
		{"src": "a.bin", "dst": "/data/a", "row": 0, "col": 0},
		{"src": "b.bin", "dst": "/data/ab", "row": 0, "col": 1},
		{"src": "models", "dst": "/data/a b", "row": 0, "col": 2},
		{"src": "models/x", "dst": "/data/a-b/x", "row": 0, "col": 3}
	]}`)
	if _, err := d.Plan(statMap(map[string]bool{"models": true, "models/x": false, "a.bin": false, "b.bin": false})); err != nil {
		t.Fatal(err)
	}
}
