package frontend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/gateway/client"
	fstypes "github.com/tonistiigi/fsutil/types"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// fakeContext is a solved build context in memory: path → mode.
type fakeContext struct {
	client.Reference
	modes map[string]fs.FileMode
	reads *int
}

func (f fakeContext) StatFile(_ context.Context, req client.StatRequest) (*fstypes.Stat, error) {
	m, ok := f.modes[req.Path]
	if !ok {
		return nil, fmt.Errorf("stat %s: no such file or directory", req.Path)
	}
	return &fstypes.Stat{Path: path.Base(req.Path), Mode: uint32(m)}, nil
}

func (f fakeContext) ReadDir(_ context.Context, req client.ReadDirRequest) ([]*fstypes.Stat, error) {
	*f.reads++
	var out []*fstypes.Stat
	for p, m := range f.modes {
		if path.Dir(p) == req.Path {
			out = append(out, &fstypes.Stat{Path: path.Base(p), Mode: uint32(m)})
		}
	}
	return out, nil
}

func TestSourceCheckerWalksFolders(t *testing.T) {
	ctx := fakeContext{reads: new(int), modes: map[string]fs.FileMode{
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
	c := &sourceChecker{ctx: context.Background(), ref: ctx, max: 100}

	if m, err := c.stat("ok"); err != nil || !m.IsDir() {
		t.Fatalf("ok: %v %v", m, err)
	}
	if *ctx.reads != 3 {
		t.Errorf("walked %d folders of ok, want 3 (symlinks are not followed)", *ctx.reads)
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
	*ctx.reads = 0
	c = &sourceChecker{ctx: context.Background(), ref: ctx, max: 2, warn: func(s string) { warnings = append(warnings, s) }}
	if _, err := c.stat("bad"); err != nil {
		t.Fatalf("bad with a bound of 2 folders: %v", err)
	}
	if _, err := c.stat("ok"); err != nil {
		t.Fatal(err)
	}
	if *ctx.reads != 2 || len(warnings) != 1 || !strings.Contains(warnings[0], "more than 2 folders") || !strings.Contains(warnings[0], "bad/sub/deep") {
		t.Fatalf("%d reads, warnings %q", *ctx.reads, warnings)
	}
}
