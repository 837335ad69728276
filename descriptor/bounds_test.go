package descriptor

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/internal/printable"
)

// aliasBomb writes a YAML descriptor of about size bytes whose allotments
// list repeats its first allotment by alias, and whose later allotments
// reuse its src and dst lists by alias: a walk that follows aliases sees
// (entries × list length) paths in a file of (entries + list length) lines.
func aliasBomb(size int) string {
	n := size / 2 / 16
	var b strings.Builder
	b.WriteString("allotments:\n  - &a\n    row: 0\n    col: 0\n    src: &s [")
	b.WriteString(strings.TrimSuffix(strings.Repeat("a/b, ", n), ", "))
	b.WriteString("]\n    dst: &d [")
	b.WriteString(strings.TrimSuffix(strings.Repeat("/a/b, ", n), ", "))
	b.WriteString("]\n")
	for i := 1; b.Len() < size; i++ {
		if i%2 == 0 {
			b.WriteString("  - *a\n")
		} else {
			fmt.Fprintf(&b, "  - {row: %d, col: 0, src: *s, dst: *d}\n", i%1024)
		}
	}
	return b.String()
}

// manyProblems writes a JSON descriptor of about size bytes whose
// allotments are all empty objects: four problems each.
func manyProblems(size int) string {
	n := (size - 20) / 3
	return fmt.Sprintf(`{"allotments": [%s{}]}`, strings.Repeat("{},", n-1))
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Aliases cannot make a small file cost more than a large one: each bomb is
// refused, located at the alias that passes the limit, having allocated
// little. Before the bound, the 150 KB one took 11 s and 3.5 GB.
func TestParseAliasBombs(t *testing.T) {
	// Four levels of ten aliases each: 11,111 values in 170 bytes, used ten
	// times as a key or as a value.
	var laughs strings.Builder
	laughs.WriteString("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 4; i++ {
		fmt.Fprintf(&laughs, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	laughs.WriteString("allotments:\n")
	for i := range 10 {
		fmt.Fprintf(&laughs, "  - {src: a, dst: /a, row: 0, col: %d, *l3 : x}\n", i)
	}
	for _, tc := range []struct{ name, in, at string }{
		{"aliases of src lists", aliasBomb(150_000), "2dfs.yaml:19:37: "},
		{"nested aliases used as a key", laughs.String(), "2dfs.yaml:13:39: "},
		{"nested aliases as a value", strings.ReplaceAll(strings.ReplaceAll(laughs.String(), ", *l3 : x", ""), "row: 0", "row: *l3"), "2dfs.yaml:13:28: "},
		{"an anchor inside itself", "allotments: &a [*a]\n", "2dfs.yaml:1:17: "},
		{"a key inside itself", "allotments: &m {*m : 1}\n", "2dfs.yaml:1:17: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Parse("2dfs.yaml", []byte(tc.in)) })
			if err == nil || !strings.HasPrefix(err.Error(), tc.at) || !strings.Contains(err.Error(), ": YAML aliases expand the descriptor past ") {
				t.Fatalf("error = %.500v, want one at %s", err, tc.at)
			}
			if n > 64<<20 {
				t.Fatalf("allocated %d MB for a %d byte file", n>>20, len(tc.in))
			}
		})
	}
}

// Aliases that stay within the bound work as before.
func TestParseAliasesWithinBound(t *testing.T) {
	d, err := Parse("2dfs.yaml", []byte(aliasBomb(3000)))
	if err != nil {
		// The bomb's "*a" entries repeat cell (0, 0) on purpose.
		if !strings.Contains(err.Error(), "is already used by allotments[0]") {
			t.Fatal(err)
		}
	} else {
		t.Fatalf("accepted %d allotments", len(d.Allotments))
	}
	d, err = Parse("2dfs.yaml", []byte("allotments:\n  - {src: &s [a, b], dst: &d [/a, /b], row: 0, col: 0}\n  - {src: *s, dst: *d, row: 0, col: 1}\n"))
	if err == nil && len(d.Allotments) == 2 && len(d.Allotments[1].Src) == 2 {
		_, err = d.Plan(statMap(map[string]bool{"a": false, "b": false}))
		if err == nil || !strings.Contains(err.Error(), "writes the same path") {
			t.Fatalf("plan error = %v", err)
		}
		return
	}
	t.Fatalf("got %+v, %v", d, err)
}

// An alias used as a key stands for the anchored key, as YAML says, not for
// the anchor's name; a key that is a list or an object is refused.
func TestParseAliasKeys(t *testing.T) {
	d, err := Parse("2dfs.yaml", []byte("allotments:\n  - {&k src: a, dst: /a, row: 0, col: 0}\n  - {*k : b, dst: /b, row: 0, col: 1}\n"))
	if err != nil || len(d.Allotments) != 2 || d.Allotments[1].Src[0] != "b" {
		t.Fatalf("got %+v, %v", d, err)
	}
	_, err = Parse("2dfs.yaml", []byte("allotments:\n  - {[src]: a, dst: /a, row: 0, col: 0}\n"))
	want := "2 problems in the 2DFS descriptor:\n" +
		"  2dfs.yaml:2:6: allotments[0] (row 0, col 0): a key in an allotment must be a string, got a list\n" +
		"  2dfs.yaml:2:5: allotments[0] (row 0, col 0): missing key \"src\""
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
}

// Every problem up to MaxErrors is listed, then only counted: a 4 MB file
// of empty allotments gave 5.3 million problems and 325 MB of text.
func TestParseManyProblems(t *testing.T) {
	in := manyProblems(30_000)
	allotments := strings.Count(in, "{}")
	_, err := Parse("2dfs.json", []byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	head := fmt.Sprintf("%d problems in the 2DFS descriptor:", 4*allotments)
	tail := fmt.Sprintf("  and %d more", 4*allotments-MaxErrors)
	if len(lines) != MaxErrors+2 || lines[0] != head || lines[len(lines)-1] != tail {
		t.Fatalf("got %d lines, first %q, last %q; want %q ... %q", len(lines), lines[0], lines[len(lines)-1], head, tail)
	}
	if lines[1] != `  2dfs.json:1:17: allotments[0]: missing key "src"` || lines[50] != `  2dfs.json:1:53: allotments[12]: missing key "dst"` {
		t.Fatalf("listed problems:\n%s", strings.Join(lines[:51], "\n"))
	}
	var e *Error
	if !errors.As(err, &e) || e.Pos != (Position{Line: 1, Column: 17}) {
		t.Fatalf("first error %+v", e)
	}
}

// Problems quoting long values stop being listed once the text is long;
// the count still says how many there are.
func TestParseManyLongProblems(t *testing.T) {
	long := strings.Repeat("x", 300)
	var entries []string
	for i := range 60 {
		entries = append(entries, fmt.Sprintf(`{"src": "%s/%d", "dst": "/a%d", "row": 0, "col": %d}`, long, i, i, i))
	}
	_, err := Parse("2dfs.json", []byte(`{"allotments": [`+strings.Join(entries, ",")+`]}`))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if len(msg) > 20<<10 || !strings.HasPrefix(msg, "60 problems in the 2DFS descriptor:\n") || !strings.HasSuffix(msg, "\n  and 10 more") {
		t.Fatalf("%d bytes: %.300s ... %s", len(msg), msg, msg[max(0, len(msg)-200):])
	}
	if !strings.Contains(msg, `src[0] "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"… (302 bytes): has a 300-byte component`) {
		t.Fatalf("long value not shortened: %.400s", msg)
	}
}

// A YAML file holds one descriptor; a second document is refused where it
// starts, as trailing JSON data is.
func TestParseSecondDocument(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"allotments: []\n---\nallotments: [{src: a, dst: /a, row: 0, col: 0}]\n", "2dfs.yaml:2:1: a second YAML document starts here"},
		{"allotments: []\n---\n", "2dfs.yaml:2:1: a second YAML document starts here"},
		{"allotments: []\n...\n---\nbase: x\n", "2dfs.yaml:3:1: a second YAML document starts here"},
		{"allotments: []\n---\n- [\n", "2dfs.yaml:3:1: invalid YAML"},
	} {
		_, err := Parse("2dfs.yaml", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %s", tc.in, err, tc.want)
		}
	}
	for _, in := range []string{"---\nallotments: []\n", "%YAML 1.1\n---\nallotments: []\n...\n", "allotments: []\n# the end\n"} {
		if _, err := Parse("2dfs.yaml", []byte(in)); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// Editors on Windows start UTF-8 files with a byte-order mark; both formats
// accept it, and columns on the first line count from after it.
func TestParseByteOrderMark(t *testing.T) {
	for _, name := range []string{"2dfs.json", "2dfs.yaml"} {
		d, err := Parse(name, []byte("\xEF\xBB\xBF{\"allotments\": [{\"src\": \"a\", \"dst\": \"/a\", \"row\": 0, \"col\": 0}]}"))
		if err != nil || len(d.Allotments) != 1 {
			t.Fatalf("%s: %+v, %v", name, d, err)
		}
		_, err = Parse(name, []byte("\xEF\xBB\xBF{\"allotments\": 3}"))
		if want := name + ":1:16: allotments: must be a list"; err == nil || err.Error() != want {
			t.Fatalf("%s: error %v, want %s", name, err, want)
		}
	}
}

// Paths the kernel or a terminal would choke on are refused up front, and
// no message echoes a raw control character.
func TestParseUnprintablePaths(t *testing.T) {
	long := strings.Repeat("n", 256)
	for _, tc := range []struct{ name, src, dst, want string }{
		{"escape in src", `a\u001b[2Jb`, "/a", `2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "a\x1b[2Jb": holds the control character '\x1b' at byte 1; paths must be printable`},
		{"NUL in dst", "a", `/a\u0000b`, `2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "/a\x00b": holds the control character '\x00' at byte 2; paths must be printable`},
		{"DEL", `a\u007f`, "/a", `2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "a\x7f": holds the control character '\x7f' at byte 1; paths must be printable`},
		{"C1 next line", "a", `/a\u0085`, `2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "/a\u0085": holds the control character '\u0085' at byte 2; paths must be printable`},
		{"tab", `a\tb`, "/a", `2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "a\tb": holds the control character '\t' at byte 1; paths must be printable`},
		{"long component", "a/" + long, "/a", `2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "a/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"… (258 bytes): has a 256-byte component "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"… (256 bytes), over the 255-byte limit for a file name`},
		{"long dst component", "a", "/" + long, `2dfs.json:1:37: allotments[0] (row 0, col 0): dst[0] "/` + long[:63] + `"… (257 bytes): has a 256-byte component "` + long[:64] + `"… (256 bytes), over the 255-byte limit for a file name`},
		{"long path", strings.Repeat("abcdefgh/", 456), "/a", `2dfs.json:1:25: allotments[0] (row 0, col 0): src[0] "abcdefgh/abcdefgh/abcdefgh/abcdefgh/abcdefgh/abcdefgh/abcdefgh/a"… (4104 bytes): is 4104 bytes long, over the 4095-byte limit for a path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fmt.Sprintf(`{"allotments": [{"src": "%s", "dst": "%s", "row": 0, "col": 0}]}`, tc.src, tc.dst)
			_, err := Parse("2dfs.json", []byte(in))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
	// 255 bytes is a valid name.
	if _, err := Parse("2dfs.json", []byte(`{"allotments": [{"src": "`+long[1:]+`", "dst": "/`+long[1:]+`", "row": 0, "col": 0}]}`)); err != nil {
		t.Fatal(err)
	}
	// Nor does a file name, or a value in a library's message.
	for _, tc := range []struct{ file, in, want string }{
		{"a\x1b]0;x\a.json", `{"allotments": 3}`, `a\x1b]0;x\a.json:1:16: allotments: must be a list`},
		{"2dfs.json", "{\"allotments\": [{\"row\": !!x \"\x1b\"}]}", ""},
		{"2dfs.yaml", "allotments: [{row: !x \"\\e[31m\", src: a, dst: /a, col: 0}]", `2dfs.yaml:1:20: allotments[0]: row: must be an integer from 0 to 1023, got "\x1b[31m"`},
	} {
		_, err := Parse(tc.file, []byte(tc.in))
		if err == nil || strings.ContainsFunc(err.Error(), func(r rune) bool { return r != '\n' && printable.IsControl(r) }) || tc.want != "" && err.Error() != tc.want {
			t.Errorf("%q: error %q, want %q", tc.in, err, tc.want)
		}
	}
}
