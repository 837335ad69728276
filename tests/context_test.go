package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Sources are looked up in directory listings of the solved context: nested
// directories, a directory reached through a symlink and the context root
// all resolve, and every missing source (in an existing directory or under a
// missing one) is reported as not found, each with its place in the file.
func TestBuildContextLookup(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "deep/er/a.bin"), []byte("a"))
	writeFile(t, filepath.Join(dir, "real/b.bin"), []byte("b"))
	writeFile(t, filepath.Join(dir, "top.bin"), []byte("t"))
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [
  {"src": "deep/er/a.bin", "dst": "/a.bin", "row": 0, "col": 0},
  {"src": "link/b.bin", "dst": "/b.bin", "row": 0, "col": 1},
  {"src": "deep", "dst": "/deep", "row": 1, "col": 0},
  {"src": "top.bin", "dst": "/top.bin", "row": 1, "col": 1}
]}`))
	ref := env.registry + "/lookup/field:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push")
	if img := pull(t, ref); len(img.record.Allotments) != 4 {
		t.Fatalf("record = %+v", img.record)
	}

	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [
  {"src": "deep/er/a.bin", "dst": "/a.bin", "row": 0, "col": 0},
  {"src": "deep/er/gone.bin", "dst": "/g1", "row": 0, "col": 1},
  {"src": "nodir/deeper/gone.bin", "dst": "/g2", "row": 0, "col": 2},
  {"src": "top.bin/gone", "dst": "/g3", "row": 0, "col": 3}
]}`))
	out := buildFails(t, env.buildkit, dir)
	for _, want := range []string{
		`2dfs.json:3:11: allotments[1] (row 0, col 1): src[0] "deep/er/gone.bin": not found in the build context`,
		`2dfs.json:4:11: allotments[2] (row 0, col 2): src[0] "nodir/deeper/gone.bin": not found in the build context`,
		`2dfs.json:5:11: allotments[3] (row 0, col 3): src[0] "top.bin/gone": not found in the build context`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}
