package frontend

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moby/buildkit/frontend/gateway/client"
	fstypes "github.com/tonistiigi/fsutil/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeContext is a solved build context as the gateway client sees it: a
// failed stat or listing comes back the way BuildKit sends it over gRPC,
// a status with code Unknown whose message is the OS error's text.
type fakeContext struct {
	client.Reference
	files map[string]os.FileMode // path -> mode (fs.ModeDir for directories)
	// broken, when set, fails every call: the context cannot be read at all.
	broken error
	calls  atomic.Int64 // the source walk reads folders concurrently
}

func (f *fakeContext) StatFile(_ context.Context, req client.StatRequest) (*fstypes.Stat, error) {
	f.calls.Add(1)
	if f.broken != nil {
		return nil, f.broken
	}
	p := path.Clean(req.Path)
	mode, ok := f.files[p]
	if p == "." {
		mode, ok = fs.ModeDir, true
	}
	if !ok {
		return nil, status.Error(codes.Unknown, "lstat "+p+": no such file or directory")
	}
	return &fstypes.Stat{Path: path.Base(p), Mode: uint32(mode)}, nil
}

func (f *fakeContext) ReadDir(_ context.Context, req client.ReadDirRequest) ([]*fstypes.Stat, error) {
	f.calls.Add(1)
	if f.broken != nil {
		return nil, f.broken
	}
	dir := path.Clean(req.Path)
	if mode, ok := f.files[dir]; dir != "." && (!ok || !mode.IsDir()) {
		return nil, status.Error(codes.Unknown, "walking "+dir+": lstat "+dir+": no such file or directory")
	}
	var out []*fstypes.Stat
	for p, mode := range f.files {
		if path.Dir(p) == dir {
			out = append(out, &fstypes.Stat{Path: path.Base(p), Mode: uint32(mode)})
		}
	}
	slices.SortFunc(out, func(a, b *fstypes.Stat) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func newFakeContext() *fakeContext {
	return &fakeContext{files: map[string]os.FileMode{
		"splits":        fs.ModeDir | 0o755,
		"splits/a.bin":  0o644,
		"splits/b.bin":  0o644,
		"tokenizer":     fs.ModeDir | 0o755,
		"tokenizer/v":   0o644,
		"top.bin":       0o644,
		"not-found.bin": 0o644, // a name that reads like an error message
	}}
}

func TestContextStat(t *testing.T) {
	ref := newFakeContext()
	stat := newSourceChecker(context.Background(), ref, maxWalkFolders, nil).stat
	for src, wantDir := range map[string]bool{"splits/a.bin": false, "splits/b.bin": false, "tokenizer": true, "top.bin": false, ".": true, "not-found.bin": false} {
		mode, err := stat(src)
		if err != nil || mode.IsDir() != wantDir {
			t.Errorf("stat(%q) = %v, %v; want dir=%v", src, mode, err, wantDir)
		}
	}
	for _, src := range []string{"gone.bin", "splits/gone.bin", "nodir/a.bin", "nodir/deeper/a.bin", "top.bin/a"} {
		if _, err := stat(src); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat(%q) = %v, want fs.ErrNotExist", src, err)
		}
	}
}

// A context that cannot be read at all is a failure of the build, not a
// missing file, even when BuildKit's message says "not found": the user must
// not be told to check .dockerignore.
func TestContextStatKeepsOtherErrors(t *testing.T) {
	ref := newFakeContext()
	ref.broken = status.Error(codes.Unknown, "failed to get mount for ref abc: snapshot not found")
	_, err := newSourceChecker(context.Background(), ref, maxWalkFolders, nil).stat("splits/a.bin")
	if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "snapshot not found") {
		t.Fatalf("got %v, want the gateway's error as it is", err)
	}
}

// Sources in one directory share one listing.
func TestContextStatListsEachDirectoryOnce(t *testing.T) {
	ref := newFakeContext()
	stat := newSourceChecker(context.Background(), ref, maxWalkFolders, nil).stat
	for _, src := range []string{"splits/a.bin", "splits/b.bin", "splits/gone.bin", "top.bin"} {
		_, _ = stat(src)
	}
	if n := ref.calls.Load(); n > 2 {
		t.Errorf("%d gateway calls for 4 sources in 2 directories", n)
	}
}
