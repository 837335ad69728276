package frontend

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/descriptor"
)

func TestSourceCheckerWalksFolders(t *testing.T) {
	ctx := &fakeContext{files: map[string]fs.FileMode{
		"ok":                fs.ModeDir | 0o755,
		"ok/a.bin":          0o644,
		"ok/sub":            fs.ModeDir | 0o755,
		"ok/sub/link":       fs.ModeSymlink | 0o777,
		"ok/sub/deeper":     fs.ModeDir | 0o700,
		"ok/sub/deeper/b":   0o600,
		"bad":               fs.ModeDir | 0o755,
		"bad/x":             0o644,
		"bad/sub":           fs.ModeDir | 0o755,
		"bad/sub/deep":      fs.ModeDir | 0o755,
		"bad/sub/deep/fifo": fs.ModeNamedPipe | 0o644,
		"dev":               fs.ModeDevice | 0o660,
		"file":              0o644,
	}}
	c := newSourceChecker(context.Background(), ctx, 100, nil)

	if m, err := c.stat("ok"); err != nil || !m.IsDir() {
		t.Fatalf("ok: %v %v", m, err)
	}
	// One listing of "." to find ok, then its three folders.
	if n := ctx.calls.Load(); n != 4 {
		t.Errorf("%d gateway calls for ok, want 4 (symlinks are not followed)", n)
	}
	var special *descriptor.SpecialFileError
	if _, err := c.stat("bad"); !errors.As(err, &special) || special.Path != "bad/sub/deep/fifo" || special.Mode&fs.ModeNamedPipe == 0 {
		t.Fatalf("bad: error %v, want the nested FIFO", err)
	}
	// A special file named as the source is for Plan to refuse: stat says
	// what it is.
	if m, err := c.stat("dev"); err != nil || m&fs.ModeDevice == 0 {
		t.Fatalf("dev: %v %v", m, err)
	}
	if _, err := c.stat("gone"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("gone: %v, want fs.ErrNotExist", err)
	}

	// Past the bound the walk stops with one warning instead of an error.
	var warnings []string
	ctx.calls.Store(0)
	c = newSourceChecker(context.Background(), ctx, 2, func(s string) { warnings = append(warnings, s) })
	if _, err := c.stat("bad"); err != nil {
		t.Fatalf("bad with a bound of 2 folders: %v", err)
	}
	if _, err := c.stat("ok"); err != nil {
		t.Fatal(err)
	}
	// One listing of "." and the two folders the bound allows.
	if ctx.calls.Load() != 3 || len(warnings) != 1 || !strings.Contains(warnings[0], "more than 2 folders") || !strings.Contains(warnings[0], "bad/sub/deep") {
		t.Fatalf("%d reads, warnings %q", ctx.calls.Load(), warnings)
	}
}
