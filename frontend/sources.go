package frontend

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/gateway/client"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// maxWalkFolders bounds how many folders inside source folders the build
// reads to look for special files: one gateway call each. Past it the rest
// is copied unchecked, with a warning, rather than slowing every build of a
// huge tree.
const maxWalkFolders = 10000

// sourceChecker stats allotment sources in the solved build context.
type sourceChecker struct {
	ctx     context.Context
	ref     client.Reference
	folders int
	max     int
	warn    func(string)
	warned  bool
}

// stat is a descriptor.StatFunc. StatFile follows symlinks inside the
// context, as the copy does. A folder is walked for FIFOs, sockets and
// devices, which BuildKit's copy would recreate in the image; nested
// symlinks are copied as symlinks, so they are not followed.
func (s *sourceChecker) stat(src string) (fs.FileMode, error) {
	st, err := s.ref.StatFile(s.ctx, client.StatRequest{Path: src})
	if err != nil {
		if isNotExist(err) {
			return 0, fs.ErrNotExist
		}
		return 0, err
	}
	mode := fs.FileMode(st.Mode)
	if mode.IsDir() {
		if err := s.walk(src); err != nil {
			return 0, err
		}
	}
	return mode, nil
}

func (s *sourceChecker) walk(dir string) error {
	queue := []string{dir}
	for len(queue) > 0 {
		if s.folders >= s.max {
			if !s.warned && s.warn != nil {
				s.warn(fmt.Sprintf("source folders hold more than %d folders: the rest (from %s on) were not checked for FIFOs, sockets and devices", s.max, queue[0]))
			}
			s.warned = true
			return nil
		}
		s.folders++
		d := queue[0]
		queue = queue[1:]
		entries, err := s.ref.ReadDir(s.ctx, client.ReadDirRequest{Path: d})
		if err != nil {
			return fmt.Errorf("read folder %s: %v", d, err)
		}
		for _, e := range entries {
			m, p := fs.FileMode(e.Mode), path.Join(d, e.Path)
			switch {
			case m.IsDir():
				queue = append(queue, p)
			case !descriptor.Copyable(m):
				return &descriptor.SpecialFileError{Path: p, Mode: m}
			}
		}
	}
	return nil
}

func isNotExist(err error) bool {
	return strings.Contains(err.Error(), "no such file or directory") || strings.Contains(err.Error(), "not found")
}
