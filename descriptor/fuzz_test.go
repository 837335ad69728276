package descriptor

import (
	"encoding/json"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tdfs-kit/tdfs/internal/printable"
)

// Bounds on one call of Parse in the fuzz target. Fuzz inputs are small;
// what must not happen is a small input costing much (alias expansion, a
// quadratic check).
const (
	fuzzMaxTime  = raceSlowdown * time.Second
	fuzzMaxAlloc = 64 << 20
)

// FuzzParse checks that Parse never panics, stays within time and memory
// bounds, reports errors that name the file and echo no control
// characters, and that whatever it accepts is valid and survives a round
// trip through JSON. Every input is parsed as JSON and as YAML. Seeds live
// in testdata/fuzz/FuzzParse; run with: go test -fuzz FuzzParse ./descriptor
func FuzzParse(f *testing.F) {
	f.Add("2dfs.json", []byte(`{"allotments": [{"src": "a", "dst": "/a", "row": 0, "col": 0}]}`))
	f.Add("2dfs.yaml", []byte("allotments:\n  - {src: [a, b], dst: [/a, /b], row: 1, col: 2}\n"))
	f.Add("2dfs.yaml", []byte("allotments:\n  - &a {src: &s [a, b], dst: &d [/a, /b], row: 0, col: 0}\n  - {src: *s, dst: *d, row: 0, col: 1}\n  - *a\n"))
	f.Add("2dfs.yaml", []byte("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\nl1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\nl2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nallotments: [{*l2 : x, src: *l2, dst: *l2, row: *l2, col: 0}]\n"))
	f.Add("2dfs.yaml", []byte(aliasBomb(4000)))
	f.Add("2dfs.yaml", []byte(aliasBomb(30000)))
	f.Add("2dfs.yml", []byte("allotments: &a [*a]\n"))
	f.Add("2dfs.yml", []byte("allotments: [&m {*m : 1, src: a, dst: /a, row: 0, col: 0}]\n"))
	f.Add("2dfs.yaml", []byte("allotments:\n  - {&k src: a, dst: /a, row: 0, col: 0}\n  - {*k : b, dst: /b, row: 0, col: 1}\n"))
	f.Add("2dfs.yaml", []byte("allotments: []\n---\nallotments: [{src: a, dst: /a, row: 0, col: 0}]\n"))
	f.Add("2dfs.yaml", []byte("\xEF\xBB\xBFallotments: [{src: \"a\\e\", dst: \"/\\0\", row: 0, col: 0}]\n"))
	f.Add("2dfs\x1b[31m.json", []byte("\xEF\xBB\xBF{\"allotments\": [{\"src\": \"..\", \"dst\": \"/a\\u0085\", \"row\": 0, \"col\": 0}]}"))
	f.Add("2dfs.json", []byte(manyProblems(3000)))
	f.Add("2dfs.json", []byte(`{"allotments": [{"src": ["https://h.example/a?sig=x", "b"], "checksum": ["sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", ""], "authSecret": "tok", "dst": ["/a", "/b"], "row": 0, "col": 0}, {"src": "/opt/w", "from": "weights", "dst": "/w", "row": 0, "col": 1}, {"src": "http://h/u", "unpinned": true, "dst": "/u/", "row": 1, "col": 0}]}`))
	f.Add("2dfs.yaml", []byte("allotments:\n  - {src: 'https://u:p@h/x', checksum: md5:1, from: base, authSecret: 'a b', unpinned: yes, dst: /x, row: 0, col: 0}\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		// Each input goes through both formats.
		other := "2dfs.yaml"
		if isYAMLName(name) {
			other = "2dfs.json"
		}
		parseChecked(t, other, data)
		parseChecked(t, name, data)
	})
}

// parseChecked parses one input under the fuzz oracle.
func parseChecked(t *testing.T, name string, data []byte) {
	t.Helper()
	var d *Descriptor
	var err error
	start := time.Now()
	alloc := allocated(func() { d, err = Parse(name, data) })
	if took := time.Since(start); took > fuzzMaxTime {
		// A loaded machine can stall one run; a slow input is slow twice.
		start = time.Now()
		_, _ = Parse(name, data)
		if again := time.Since(start); again > fuzzMaxTime {
			t.Fatalf("parsing %d bytes as %s took %v, then %v", len(data), name, took, again)
		}
	}
	if alloc > fuzzMaxAlloc {
		t.Fatalf("parsing %d bytes as %s allocated %d MB", len(data), name, alloc>>20)
	}
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, printable.String(name)) && !strings.Contains(msg, "problems in the 2DFS descriptor") {
			t.Fatalf("error does not name the file: %q", msg)
		}
		if hasControl(strings.ReplaceAll(msg, "\n", "")) {
			t.Fatalf("error echoes a control character: %q", msg)
		}
		if len(msg) > 2*maxErrorText {
			t.Fatalf("error is %d bytes", len(msg))
		}
		return
	}
	seen := map[[2]int]bool{}
	type entry struct {
		Src        []string `json:"src"`
		Dst        []string `json:"dst"`
		Row        int      `json:"row"`
		Col        int      `json:"col"`
		Checksum   []string `json:"checksum,omitempty"`
		AuthSecret string   `json:"authSecret,omitempty"`
		From       string   `json:"from,omitempty"`
		Unpinned   bool     `json:"unpinned,omitempty"`
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
			if !path.IsAbs(dst) || path.Clean(dst) == "/" || !nameOK(dst) {
				t.Fatalf("accepted dst %q", dst)
			}
		}
		for j, src := range a.Src {
			switch {
			case IsURL(src):
				u, err := url.Parse(src)
				if err != nil || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") || a.From != "" {
					t.Fatalf("accepted URL src %q", src)
				}
				if !a.Unpinned && (j >= len(a.Checksum) || a.Checksum[j] == "") {
					t.Fatalf("accepted URL src %q without a checksum", src)
				}
			case a.From != "":
				if slices.Contains(strings.Split(src, "/"), "..") || !nameOK(src) || slices.Contains(ReservedContexts, a.From) {
					t.Fatalf("accepted src %q from %q", src, a.From)
				}
			default:
				if c := path.Clean(src); path.IsAbs(src) || c == ".." || strings.HasPrefix(c, "../") || !nameOK(src) {
					t.Fatalf("accepted src %q", src)
				}
			}
		}
		entries = append(entries, entry{a.Src, a.Dst, a.Cell.Row, a.Cell.Col, a.Checksum, a.AuthSecret, a.From, a.Unpinned})
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
		if a.Cell != b.Cell || !reflect.DeepEqual(a.Src, b.Src) || !reflect.DeepEqual(a.Dst, b.Dst) ||
			!reflect.DeepEqual(a.Checksum, b.Checksum) || a.AuthSecret != b.AuthSecret || a.From != b.From || a.Unpinned != b.Unpinned {
			t.Fatalf("round trip changed allotment %d: %+v vs %+v", i, a, b)
		}
	}
}

// nameOK is the fuzz oracle's own statement of a usable path: printable,
// components and the whole within Linux's limits.
func nameOK(p string) bool {
	if len(p) > 4095 || hasControl(p) {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > 255 {
			return false
		}
	}
	return true
}

// hasControl reports a control character or a byte that is not UTF-8 (a
// literal U+FFFD is fine).
func hasControl(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD") || r != utf8.RuneError && printable.IsControl(r) {
			return true
		}
	}
	return false
}
