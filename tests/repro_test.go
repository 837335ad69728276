package tests

import (
	"archive/tar"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/field"
)

// reproSource is one file or folder of the reproducibility field, written
// into two copies of the context with different modes, owners and times that
// the normalization must erase.
type reproSource struct {
	path   string
	dir    bool
	link   string // a symlink to this target, inside a directory source
	modeA  os.FileMode
	modeB  os.FileMode
	ownerA int // uid and gid of copy A; copy B is root's
	want   int64
}

// reproContexts writes the same field into two folders that differ in
// everything but content: modes, owners and mtimes. Sources that must agree
// after normalization differ only where it allows (0600 and 0644 both give
// 0644; an executable bit anywhere gives 0755; set-id and sticky bits go).
func reproContexts(t *testing.T) (a, b string, sources []reproSource) {
	t.Helper()
	sources = []reproSource{
		{path: "data/a.bin", modeA: 0o600, modeB: 0o644, ownerA: 1234, want: 0o644},
		{path: "data/b.bin", modeA: 0o640, modeB: 0o444, want: 0o644},
		{path: "data/c.sh", modeA: 0o777, modeB: 0o700, ownerA: 4321, want: 0o755},
		{path: "data/setuid", modeA: 0o4755, modeB: 0o755, want: 0o755},
		{path: "data/setgid", modeA: 0o2711, modeB: 0o100, want: 0o755},
		{path: "tree", dir: true, modeA: 0o700, modeB: 0o775, ownerA: 1234, want: 0o755},
		{path: "tree/top.txt", modeA: 0o600, modeB: 0o664, want: 0o644},
		{path: "tree/sub1", dir: true, modeA: 0o2770, modeB: 0o755, want: 0o755},
		{path: "tree/sub1/x.bin", modeA: 0o644, modeB: 0o600, ownerA: 1234, want: 0o644},
		{path: "tree/sub1/deep", dir: true, modeA: 0o1777, modeB: 0o711, want: 0o755},
		{path: "tree/sub1/deep/y.bin", modeA: 0o755, modeB: 0o4711, want: 0o755},
		{path: "tree/sub2", dir: true, modeA: 0o755, modeB: 0o700, ownerA: 4321, want: 0o755},
		{path: "tree/sub2/z.txt", modeA: 0o444, modeB: 0o600, want: 0o644},
		{path: "tree/sub2/link", link: "../top.txt"},
		{path: "solo/one.bin", modeA: 0o1644, modeB: 0o644, ownerA: 65534, want: 0o644},
	}
	a, b = t.TempDir(), t.TempDir()
	for i, ctx := range []string{a, b} {
		for _, s := range sources {
			p := filepath.Join(ctx, s.path)
			switch {
			case s.dir:
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			case s.link != "":
				if err := os.Symlink(s.link, p); err != nil {
					t.Fatal(err)
				}
			default:
				writeFile(t, p, []byte("content of "+s.path+"\n"))
			}
		}
		// Modes, owners and times last, deepest first, so creating a child
		// does not touch its folder's time.
		for j := len(sources) - 1; j >= 0; j-- {
			s := sources[j]
			p := filepath.Join(ctx, s.path)
			mode, owner, mtime := s.modeB, 0, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			if i == 0 {
				mode, owner, mtime = s.modeA, s.ownerA, time.Date(2001, 6, 7, 8, 9, 10, 123456789, time.UTC)
			}
			if s.link != "" {
				if err := os.Lchown(p, owner, owner); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.Lchown(p, owner, owner); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, goMode(mode)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		desc := map[string]any{"allotments": []map[string]any{
			// Several sources sharing /data, nested destinations (/data/bin
			// only exists because of a later source) and a directory source
			// with sub-folders placed inside the same tree.
			{"src": []string{"data/a.bin", "data/b.bin", "data/c.sh", "tree"},
				"dst": []string{"/data/a.bin", "/data/", "/data/bin/c.sh", "/data/tree"}, "row": 0, "col": 0},
			{"src": []string{"data/setuid", "data/setgid", "solo/one.bin"},
				"dst": []string{"/opt/x/bin/setuid", "/opt/x/sbin/setgid", "/opt/one.bin"}, "row": 0, "col": 1},
			{"src": "tree", "dst": "/srv/tree", "row": 1, "col": 0},
			{"src": "solo/one.bin", "dst": "/one.bin", "row": 1, "col": 1},
		}}
		dt, _ := json.MarshalIndent(desc, "", "  ")
		writeFile(t, filepath.Join(ctx, "2dfs.json"), dt)
	}
	return a, b, sources
}

// goMode turns a chmod-style mode with set-id and sticky bits into Go's.
func goMode(m os.FileMode) os.FileMode {
	out := m & 0o777
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// Two builders, each given its own copy of the context with other modes,
// owners and times, build byte-identical layers and the same image; every
// entry of every allotment layer is owned by 0:0, has a normalized mode and
// the epoch as its time, including folders several sources share.
func TestReproducibleOddSources(t *testing.T) {
	a, b, sources := reproContexts(t)
	ref := env.registry + "/repro-odd/field"
	build(t, env.buildkit, a, "-t", ref+":a", "--push", "--engine", "buildkit")
	other := extraBuildkitd(t, "repro-odd")
	build(t, other, b, "-t", ref+":b", "--push", "--engine", "buildkit")
	imgA, imgB := pull(t, ref+":a"), pull(t, ref+":b")

	if len(imgA.record.Allotments) != 4 {
		t.Fatalf("record = %+v, want 4 allotments", imgA.record)
	}
	for cell, layer := range imgA.allotmentLayers() {
		if imgB.allotmentLayers()[cell] != layer {
			t.Errorf("allotment %s: layer %s from one context and builder, %s from the other", cell, layer, imgB.allotmentLayers()[cell])
		}
	}
	if imgA.digest != imgB.digest {
		t.Errorf("image digests differ: %s vs %s", imgA.digest, imgB.digest)
	}

	wantMode := map[string]int64{}
	for _, s := range sources {
		wantMode[s.path] = s.want
	}
	// Where each source lands, cell by cell; folders the copies create on
	// the way (/data, /data/bin, /opt/x, ...) must be 0755.
	landed := map[field.Cell]map[string]string{
		{Row: 0, Col: 0}: {"/data/a.bin": "data/a.bin", "/data/b.bin": "data/b.bin", "/data/bin/c.sh": "data/c.sh", "/data/tree": "tree"},
		{Row: 0, Col: 1}: {"/opt/x/bin/setuid": "data/setuid", "/opt/x/sbin/setgid": "data/setgid", "/opt/one.bin": "solo/one.bin"},
		{Row: 1, Col: 0}: {"/srv/tree": "tree"},
		{Row: 1, Col: 1}: {"/one.bin": "solo/one.bin"},
	}
	for _, img := range []pulled{imgA, imgB} {
		for _, al := range img.record.Allotments {
			cell := al.Cell()
			entries, _ := readLayer(t, img.raw, al.Layer)
			if len(entries) == 0 {
				t.Fatalf("allotment %s: empty layer", cell)
			}
			for p, e := range entries {
				h := e.hdr
				if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
					t.Errorf("allotment %s: %s owned by %d:%d (%q:%q), want 0:0", cell, p, h.Uid, h.Gid, h.Uname, h.Gname)
				}
				if !h.ModTime.Equal(time.Unix(0, 0)) {
					t.Errorf("allotment %s: %s has mtime %v, want the epoch", cell, p, h.ModTime.UTC())
				}
				for _, x := range []time.Time{h.AccessTime, h.ChangeTime} {
					if !x.IsZero() && !x.Equal(time.Unix(0, 0)) {
						t.Errorf("allotment %s: %s carries a time %v that is not the epoch", cell, p, x.UTC())
					}
				}
				src := sourceOf(landed[cell], p)
				want := int64(0o755)
				switch {
				case h.Typeflag == tar.TypeSymlink:
					want = 0o777
				case src != "":
					want = wantMode[src]
				case h.Typeflag != tar.TypeDir:
					t.Errorf("allotment %s: %s is no source of this cell", cell, p)
				}
				if h.Mode != want {
					t.Errorf("allotment %s: %s has mode %o, want %o", cell, p, h.Mode, want)
				}
			}
		}
	}
}

// sourceOf maps a path in a layer back to the context path it came from,
// through the destinations of its cell; "" for folders the copy created.
func sourceOf(landed map[string]string, p string) string {
	for dst, src := range landed {
		if p == dst {
			return src
		}
		if rel, err := filepath.Rel(dst, p); err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") {
			return filepath.Join(src, rel)
		}
	}
	return ""
}

// --no-cache=ROW.COL re-runs exactly the allotments it names; --no-cache
// alone re-runs every one. Re-run allotments give the same layers.
func TestNoCache(t *testing.T) {
	dir, _ := example(t, baseImage(t, "v1", ""))
	ref := env.registry + "/nocache/field"
	build(t, env.buildkit, dir, "-t", ref+":v1", "--push", "--engine", "buildkit")
	before := pull(t, ref+":v1").allotmentLayers()

	for _, c := range []struct {
		flag  string
		rerun map[string]bool
	}{
		{"--no-cache=1.0", map[string]bool{"1,0": true}},
		{"--no-cache=2.0,0.1", map[string]bool{"2,0": true, "0,1": true}},
		{"--no-cache", map[string]bool{"0,0": true, "0,1": true, "1,0": true, "1,1": true, "2,0": true}},
	} {
		out := build(t, env.buildkit, dir, "-t", ref+":v2", "--push", "--engine", "buildkit", c.flag)
		// Counted first: a progress format the parser no longer reads must
		// not pass as "every allotment cached".
		vertices := allotmentVertices(t, out, exampleCells)
		for cell, cached := range vertices {
			if cached == c.rerun[cell] {
				t.Errorf("%s: allotment %s cached = %v, want %v", c.flag, cell, cached, !c.rerun[cell])
			}
		}
		if after := pull(t, ref+":v2").allotmentLayers(); !maps.Equal(after, before) {
			t.Errorf("%s: layers changed on a re-run: %v -> %v", c.flag, before, after)
		}
	}

	out := buildFails(t, env.buildkit, dir, "--no-cache=1,0")
	if !strings.Contains(out, `no-cache=1,0: "1": want an allotment's cell as row.col`) {
		t.Errorf("--no-cache=1,0 does not say to name cells as row.col:\n%s", out)
	}
	out = buildFails(t, env.buildkit, dir, "--no-cache=7.7")
	if !strings.Contains(out, `no-cache=7.7: "7.7": the field has no allotment at row 7, col 7`) {
		t.Errorf("--no-cache=7.7 does not name the missing cell:\n%s", out)
	}
}

// FIFOs and device nodes, named as sources or inside a source folder, fail
// the build with their location; regular files, folders and symlinks inside
// the context build as before. (Sockets never reach BuildKit as sockets:
// fsutil's sender clears the socket bit, so they arrive as empty files.)
func TestSpecialFilesRefused(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.bin"), []byte("a\n"))
	writeFile(t, filepath.Join(dir, "tree/sub/ok.txt"), []byte("ok\n"))
	writeFile(t, filepath.Join(dir, "good/sub/f.txt"), []byte("f\n"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("../../a.bin", filepath.Join(dir, "good/sub/link")))
	must(os.Symlink("a.bin", filepath.Join(dir, "alias")))
	must(syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644))
	must(syscall.Mkfifo(filepath.Join(dir, "tree/sub/deep.fifo"), 0o644))
	must(syscall.Mknod(filepath.Join(dir, "disk"), syscall.S_IFBLK|0o660, 7<<8|200 /* makedev(7, 200) */))
	must(syscall.Mknod(filepath.Join(dir, "tty"), syscall.S_IFCHR|0o620, 1<<8|3 /* makedev(1, 3) */))

	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [
{"src": ["a.bin", "good", "alias"], "dst": ["/a.bin", "/good", "/alias"], "row": 0, "col": 0},
{"src": "pipe", "dst": "/pipe", "row": 0, "col": 1},
{"src": "tree", "dst": "/tree", "row": 1, "col": 0},
{"src": "disk", "dst": "/disk", "row": 1, "col": 1},
{"src": "tty", "dst": "/tty", "row": 2, "col": 0}
]}`))
	out := buildFails(t, env.buildkit, dir)
	for _, want := range []string{
		`2dfs.json:3:9: allotments[1] (row 0, col 1): src[0] "pipe": pipe is a named pipe (FIFO); only regular files, folders and symlinks can be copied into an allotment`,
		`2dfs.json:4:9: allotments[2] (row 1, col 0): src[0] "tree": tree/sub/deep.fifo is a named pipe (FIFO)`,
		`2dfs.json:5:9: allotments[3] (row 1, col 1): src[0] "disk": disk is a block device`,
		`2dfs.json:6:9: allotments[4] (row 2, col 0): src[0] "tty": tty is a character device`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the build does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"a.bin"`) || strings.Contains(out, `"good"`) || strings.Contains(out, `"alias"`) {
		t.Errorf("a regular file, folder or symlink was refused:\n%s", out)
	}

	// Without the special sources, the same context builds; the symlinks
	// stay what they are.
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [
{"src": ["a.bin", "good", "alias"], "dst": ["/a.bin", "/good", "/alias"], "row": 0, "col": 0}
]}`))
	ref := env.registry + "/special/field:v1"
	build(t, env.buildkit, dir, "-t", ref, "--push")
	img := pull(t, ref)
	entries, _ := readLayer(t, img.raw, img.record.Allotments[0].Layer)
	if e := entries["/good/sub/link"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "../../a.bin" {
		t.Errorf("/good/sub/link = %+v, want the symlink", e.hdr)
	}
	if e := entries["/alias"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeReg || string(e.data) != "a\n" {
		t.Errorf("/alias = %+v, want a.bin's contents (a named source symlink is followed)", e.hdr)
	}
}
