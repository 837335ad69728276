package descriptor

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

// FIFOs, sockets and devices named as sources, or reported inside a source
// folder, are refused with the entry's location; files, folders and
// symlinks (a symlink inside a folder is copied as one) are not.
func TestPlanRefusesSpecialFiles(t *testing.T) {
	modes := map[string]fs.FileMode{
		"a.bin":  0o644,
		"dir":    fs.ModeDir | 0o755,
		"link":   fs.ModeSymlink | 0o777,
		"pipe":   fs.ModeNamedPipe | 0o644,
		"sock":   fs.ModeSocket | 0o755,
		"tty":    fs.ModeDevice | fs.ModeCharDevice | 0o620,
		"disk":   fs.ModeDevice | 0o660,
		"nested": fs.ModeDir | 0o755,
	}
	stat := func(src string) (fs.FileMode, error) {
		if src == "nested" {
			return 0, fmt.Errorf("walk: %w", &SpecialFileError{Path: "nested/sub/p", Mode: fs.ModeNamedPipe})
		}
		m, ok := modes[src]
		if !ok {
			return 0, fs.ErrNotExist
		}
		return m, nil
	}
	d := mustParse(t, `{"allotments": [
		{"src": ["a.bin", "dir", "link"], "dst": ["/a", "/d", "/l"], "row": 0, "col": 0},
		{"src": ["a.bin", "pipe"], "dst": ["/b", "/p"], "row": 0, "col": 1},
		{"src": "sock", "dst": "/s", "row": 1, "col": 0},
		{"src": "tty", "dst": "/t", "row": 1, "col": 1},
		{"src": "disk", "dst": "/k", "row": 2, "col": 0},
		{"src": "nested", "dst": "/n", "row": 2, "col": 1}
	]}`)
	_, err := d.Plan(stat)
	if err == nil {
		t.Fatal("want errors for special files")
	}
	for _, want := range []string{
		`2dfs.json:3:21: allotments[1] (row 0, col 1): src[1] "pipe": pipe is a named pipe (FIFO); only regular files, folders and symlinks can be copied into an allotment`,
		`2dfs.json:4:11: allotments[2] (row 1, col 0): src[0] "sock": sock is a socket;`,
		`allotments[3] (row 1, col 1): src[0] "tty": tty is a character device;`,
		`allotments[4] (row 2, col 0): src[0] "disk": disk is a block device;`,
		`allotments[5] (row 2, col 1): src[0] "nested": nested/sub/p is a named pipe (FIFO);`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n  "); n != 5 {
		t.Errorf("%d problems, want 5 (files, folders and symlinks are fine):\n%v", n, err)
	}
}
