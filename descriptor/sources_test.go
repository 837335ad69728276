package descriptor

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

const sum1 = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestParseSources(t *testing.T) {
	in := `{
  "allotments": [
    {"src": "weights/a.bin", "dst": "/m/a.bin", "row": 0, "col": 0},
    {"src": "https://files.example/m/l3.safetensors?sig=SECRET", "checksum": "` + sum1 + `", "authSecret": "hub-token", "dst": "/m/", "row": 1, "col": 0},
    {"src": ["/opt/w", "etc/x"], "from": "weights", "dst": ["/w", "/x"], "row": 2, "col": 0},
    {"src": ["notes.txt", "http://files.example/n"], "checksum": ["", ""], "unpinned": true, "dst": ["/n.txt", "/n"], "row": 3, "col": 0}
  ]
}`
	d, err := Parse("2dfs.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	a := d.Allotments[1]
	if !reflect.DeepEqual(a.Checksum, []string{sum1}) || a.AuthSecret != "hub-token" || a.Unpinned {
		t.Fatalf("allotment 1 = %+v", a)
	}
	if b := d.Allotments[2]; b.From != "weights" || b.FromPos.Line != 5 {
		t.Fatalf("allotment 2 = %+v", b)
	}
	if !d.Allotments[3].Unpinned {
		t.Fatal("unpinned not read")
	}
	// Only build-context paths are transferred from the client.
	if got := d.Sources(); !reflect.DeepEqual(got, []string{"notes.txt", "weights/a.bin"}) {
		t.Fatalf("Sources() = %v", got)
	}

	stat := func(src string) (fs.FileMode, error) { return 0, nil }
	var asked []string
	statFrom := func(from, src string) (fs.FileMode, error) {
		asked = append(asked, from+":"+src)
		if src == "opt/w" {
			return fs.ModeDir, nil
		}
		return 0, nil
	}
	planned, err := d.PlanSources(stat, statFrom)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(asked, []string{"weights:opt/w", "weights:etc/x"}) {
		t.Fatalf("looked up %v", asked)
	}
	c := planned[1].Copies[0]
	want := Copy{Src: "https://files.example/m/l3.safetensors", Dst: "/m/l3.safetensors", URL: "https://files.example/m/l3.safetensors?sig=SECRET", Checksum: sum1}
	if c != want || planned[1].AuthSecret != "hub-token" {
		t.Fatalf("URL copy = %+v, want %+v", c, want)
	}
	if p := planned[2]; p.From != "weights" || p.Copies[0] != (Copy{Src: "opt/w", Dst: "/w", Dir: true}) || p.Copies[1] != (Copy{Src: "etc/x", Dst: "/x"}) {
		t.Fatalf("from allotment = %+v", p)
	}
	if got := planned[3].Copies[1]; got.Checksum != "" || got.URL != "http://files.example/n" {
		t.Fatalf("unpinned copy = %+v", got)
	}
	// Without a way to read other images, "from" is a located error.
	if _, err := d.Plan(stat); err == nil || !strings.Contains(err.Error(), `2dfs.json:5:14: allotments[2] (row 2, col 0): src[0] "/opt/w": cannot read it from "weights"`) {
		t.Fatalf("Plan without statFrom: %v", err)
	}
}

// Every new form's problem is reported at once, located, and no credential
// of a URL is echoed.
func TestParseSourceErrors(t *testing.T) {
	in := `{"allotments": [
 {"src": "https://u:hunter2@files.example/a?sig=SECRET", "checksum": "` + sum1 + `", "dst": "/a", "row": 0, "col": 0},
 {"src": "https://files.example/b?sig=SECRET", "dst": "/b", "row": 0, "col": 1},
 {"src": "https://files.example/c", "checksum": "md5:abc", "dst": "/c", "row": 0, "col": 2},
 {"src": "a.bin", "checksum": "` + sum1 + `", "authSecret": "tok", "unpinned": true, "dst": "/d", "row": 0, "col": 3},
 {"src": ["x", "https://files.example/e"], "from": "base", "dst": ["/e1", "/e2"], "row": 0, "col": 4},
 {"src": "../x", "from": "registry.example/w:v1", "dst": "/f", "row": 0, "col": 5},
 {"src": ["https://files.example/g", "https://files.example/h"], "checksum": ["` + sum1 + `"], "dst": ["/g", "/h"], "row": 0, "col": 6},
 {"src": "s3://bucket/i", "unpinned": "yes", "authSecret": "a b", "dst": "/i", "row": 0, "col": 7},
 {"src": "x", "from": "cir", "dst": "/j", "row": 0, "col": 8}
]}`
	_, err := Parse("2dfs.json", []byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	want := `14 problems in the 2DFS descriptor:
  2dfs.json:2:10: allotments[0] (row 0, col 0): src[0] "https://files.example/a": URL carries credentials (user info); never put them in the descriptor: store the Authorization header value in a file, pass it with --secret id=NAME,src=FILE and name it with "authSecret": "NAME"
  2dfs.json:3:10: allotments[1] (row 0, col 1): src[0] "https://files.example/b": has no checksum, so the field would not be reproducible: add "checksum": "sha256:…" (the file's sha256sum), or set "unpinned": true on the allotment to fetch whatever the URL serves
  2dfs.json:4:49: allotments[2] (row 0, col 2): checksum "md5:abc": must be a sha256 digest: "sha256:" and 64 lowercase hex digits (the output of sha256sum)
  2dfs.json:5:31: allotments[3] (row 0, col 3): checksum: src[0] "a.bin" is a path, not a URL: checksums pin URLs only (use "" for it in the list)
  2dfs.json:5:120: allotments[3] (row 0, col 3): authSecret: applies to URL sources only, and this allotment has none
  2dfs.json:5:139: allotments[3] (row 0, col 3): unpinned: applies to URL sources only, and this allotment has none
  2dfs.json:6:52: allotments[4] (row 0, col 4): from "base": the build context name "base" is reserved (base is the field's base image, cir the CIR being deployed); name the context otherwise, e.g. --build-context weights=...
  2dfs.json:6:16: allotments[4] (row 0, col 4): src[1] "https://files.example/e": is a URL, but the allotment reads its sources from "base"; put URLs in an allotment without "from"
  2dfs.json:7:10: allotments[5] (row 0, col 5): src[0] "../x": must not contain ".."
  2dfs.json:8:78: allotments[6] (row 0, col 6): checksum: lists 1 checksums but src lists 2; give one per src, "" for a path
  2dfs.json:9:39: allotments[7] (row 0, col 7): unpinned: must be true or false, got "yes"
  2dfs.json:9:60: allotments[7] (row 0, col 7): authSecret: "a b" is not a secret id: use letters, digits, '.', '_' and '-', as in --secret id=NAME,src=FILE
  2dfs.json:9:10: allotments[7] (row 0, col 7): src[0] "s3://bucket/i": URL scheme "s3" is not supported; sources are build-context paths or http(s) URLs
  2dfs.json:10:23: allotments[8] (row 0, col 8): from "cir": the build context name "cir" is reserved (base is the field's base image, cir the CIR being deployed); name the context otherwise, e.g. --build-context weights=...
`
	if got := err.Error() + "\n"; got != want {
		t.Fatalf("error:\n%s\nwant:\n%s", got, want)
	}
	for _, secret := range []string{"hunter2", "SECRET"} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows %q", secret)
		}
	}
}

func TestPlanSourceErrors(t *testing.T) {
	in := `{"allotments": [
 {"src": "https://files.example/dir/?sig=S", "checksum": "` + sum1 + `", "dst": "/m/", "row": 0, "col": 0},
 {"src": "https://files.example/w.bin", "checksum": "` + sum1 + `", "dst": "/w/", "row": 0, "col": 1},
 {"src": "w.bin", "from": "weights", "dst": "/w/w.bin", "row": 1, "col": 0},
 {"src": "missing", "from": "weights", "dst": "/z", "row": 1, "col": 1}
]}`
	d, err := Parse("2dfs.json", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	statFrom := func(from, src string) (fs.FileMode, error) {
		if src == "missing" {
			return 0, fmt.Errorf("lookup: %w", fs.ErrNotExist)
		}
		return 0, nil
	}
	_, err = d.PlanSources(nil, statFrom)
	want := `2 problems in the 2DFS descriptor:
  2dfs.json:2:140: allotments[0] (row 0, col 0): dst[0] "/m/": ends in / but src[0] "https://files.example/dir/" names no file to put in it; give the full destination path
  2dfs.json:5:10: allotments[3] (row 1, col 1): src[0] "missing": not found in "weights" (the named build context of that name, or else the image)`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	d.Allotments = d.Allotments[1:3]
	_, err = d.PlanSources(nil, statFrom)
	want = `2dfs.json:4:45: allotments[2] (row 1, col 0): dst[0] "/w/w.bin": writes the same path as allotments[1] (row 0, col 1) dst[0]; allotments must not overlap`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@host.example:8443/a/b.bin?X-Amz-Signature=abc#frag": "https://host.example:8443/a/b.bin",
		"http://host/a?":         "http://host/a",
		"https://u:p@host/%zz?q": "https://host/%zz",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	msg := `digest mismatch for https://xxxxx:xxxxx@host/a.bin?sig=abc: sha256:1 (expected: sha256:2); Get "http://host/b?token=t": EOF`
	want := `digest mismatch for https://host/a.bin: sha256:1 (expected: sha256:2); Get "http://host/b": EOF`
	if got := RedactText(msg); got != want {
		t.Errorf("RedactText = %q, want %q", got, want)
	}
}
