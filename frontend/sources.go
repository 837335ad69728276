package frontend

import (
	"context"
	"fmt"
	"io/fs"
	"path"

	"github.com/moby/buildkit/frontend/gateway/client"
	fstypes "github.com/tonistiigi/fsutil/types"
	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// maxWalkFolders bounds how many folders inside source folders the build
// reads to look for special files: one gateway call each, about 2-4 ms on a
// busy builder, walkWidth at a time. Past it the rest is copied unchecked,
// with a warning, rather than slowing every build of a huge tree.
const (
	maxWalkFolders = 2000
	walkWidth      = 8
)

// contextRef is the part of a solved build context's reference that source
// checks use.
type contextRef interface {
	dirReader
	StatFile(ctx context.Context, req client.StatRequest) (*fstypes.Stat, error)
}

// sourceChecker stats allotment sources in the solved build context.
type sourceChecker struct {
	ctx     context.Context
	ref     contextRef
	lookup  func(src string) (*fstypes.Stat, error)
	folders int
	max     int
	warn    func(string)
	warned  bool
}

// newSourceChecker checks sources in ref, walking at most max folders inside
// source folders; warn (may be nil) hears when the bound cuts a walk short.
func newSourceChecker(ctx context.Context, ref contextRef, max int, warn func(string)) *sourceChecker {
	return &sourceChecker{ctx: ctx, ref: ref, lookup: contextLookup(ctx, ref), max: max, warn: warn}
}

// stat is a descriptor.StatFunc. Whether a source exists comes from its
// folder's listing (see contextLookup); a symlink is then followed with
// StatFile, as the copy follows it. A folder is walked for FIFOs, sockets
// and devices, which BuildKit's copy would recreate in the image; nested
// symlinks are copied as symlinks, so they are not followed.
func (s *sourceChecker) stat(src string) (fs.FileMode, error) {
	st, err := s.lookup(src)
	if err != nil {
		return 0, err
	}
	if fs.FileMode(st.Mode)&fs.ModeSymlink != 0 {
		if st, err = s.ref.StatFile(s.ctx, client.StatRequest{Path: src}); err != nil {
			return 0, err
		}
	}
	mode := fs.FileMode(st.Mode)
	if mode.IsDir() {
		if err := s.walk(src); err != nil {
			return 0, err
		}
	}
	return mode, nil
}

// walk reads the folders under dir level by level, each level's folders
// walkWidth at a time, and reports the first special entry in that order,
// so the same tree always gives the same error.
func (s *sourceChecker) walk(dir string) error {
	level := []string{dir}
	for len(level) > 0 {
		if left := s.max - s.folders; len(level) > left {
			if !s.warned && s.warn != nil {
				s.warn(fmt.Sprintf("source folders hold more than %d folders: the rest (from %s on) were not checked for FIFOs and devices", s.max, level[max(left, 0)]))
			}
			s.warned = true
			level = level[:max(left, 0)]
		}
		s.folders += len(level)
		entries := make([][]*fstypes.Stat, len(level))
		eg, ctx := errgroup.WithContext(s.ctx)
		eg.SetLimit(walkWidth)
		for i, d := range level {
			eg.Go(func() error {
				var err error
				if entries[i], err = s.ref.ReadDir(ctx, client.ReadDirRequest{Path: d}); err != nil {
					return fmt.Errorf("read folder %s: %v", d, err)
				}
				return nil
			})
		}
		if err := eg.Wait(); err != nil {
			return err
		}
		var next []string
		for i, d := range level {
			for _, e := range entries[i] {
				m, p := fs.FileMode(e.Mode), path.Join(d, e.Path)
				switch {
				case m.IsDir():
					next = append(next, p)
				case !descriptor.Copyable(m):
					return &descriptor.SpecialFileError{Path: p, Mode: m}
				}
			}
		}
		level = next
	}
	return nil
}
