package layer

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// Scan reads the metadata of an allotment's sources under the context folder
// root and returns the tree its layer holds. A named source that is a
// symlink is followed, as the copy follows it; symlinks inside source
// folders stay symlinks. It refuses what the BuildKit path would copy
// differently or refuses too: special files, sources outside the context,
// files with file capabilities (which the differ writes as an xattr).
func Scan(root string, a descriptor.PlannedAllotment) (*Tree, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	t := NewTree()
	for i, c := range a.Copies {
		src, err := inContext(root, c.Src)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("allotment %s: source %s: %w", a.Cell, c.Src, err)
		}
		if !st.IsDir() {
			e, err := entryOf(src, c.Src, st, i)
			if err != nil {
				return nil, err
			}
			// A named source is one file, even with other links elsewhere.
			e.Path, e.Inode = c.Dst, InodeKey{}
			stamp(&e, st)
			t.Add(e)
			continue
		}
		top := Entry{Path: c.Dst, Type: tar.TypeDir, Mode: dirMode}
		stamp(&top, st)
		t.Add(top)
		err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("allotment %s: read %s: %w", a.Cell, ctxPath(root, p), err)
			}
			if p == src {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("allotment %s: stat %s: %w", a.Cell, ctxPath(root, p), err)
			}
			e, err := entryOf(p, ctxPath(root, p), info, i)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			e.Path = path.Join(c.Dst, filepath.ToSlash(rel))
			stamp(&e, info)
			t.Add(e)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// inContext resolves a source against the context folder and refuses one
// whose symlinks lead outside it: BuildKit's context transfer would not
// carry what it points at.
func inContext(root, src string) (string, error) {
	p := filepath.Join(root, filepath.FromSlash(src))
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("source %s: %w", src, err)
	}
	rootReal, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("context %s: %w", root, err)
	}
	if real != rootReal && !strings.HasPrefix(real, rootReal+string(filepath.Separator)) {
		return "", fmt.Errorf("source %s resolves to %s, outside the context %s", src, real, root)
	}
	return p, nil
}

func ctxPath(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(rel)
}

// entryOf makes the entry of one file from its Lstat (or, for a named
// source, Stat) info; name is its path in the context, for errors.
func entryOf(p, name string, info fs.FileInfo, copyIndex int) (Entry, error) {
	m := info.Mode()
	switch {
	case m.IsDir():
		return Entry{Type: tar.TypeDir, Mode: dirMode}, nil
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return Entry{}, fmt.Errorf("read symlink %s: %w", name, err)
		}
		return Entry{Type: tar.TypeSymlink, Mode: symlinkMode, Linkname: target}, nil
	case m.IsRegular():
		if capability(p) {
			return Entry{}, fmt.Errorf("%s has file capabilities (security.capability), which the direct engine does not copy; build it with --engine buildkit", name)
		}
		e := Entry{Type: tar.TypeReg, Mode: NormalFileMode(uint32(m.Perm())), Size: info.Size(), Source: p, SourceMtime: info.ModTime()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			e.Inode = InodeKey{Copy: copyIndex + 1, Dev: uint64(st.Dev), Ino: st.Ino}
		}
		return e, nil
	default:
		return Entry{}, &descriptor.SpecialFileError{Path: name, Mode: m}
	}
}

// stamp records what the scan saw of a source for the stat cache.
func stamp(e *Entry, info fs.FileInfo) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		e.Stat = fmt.Sprintf("%d %d %o", info.Size(), info.ModTime().UnixNano(), info.Mode())
		e.Changed = info.ModTime()
		return
	}
	mtime, ctime := time.Unix(st.Mtim.Unix()), time.Unix(st.Ctim.Unix())
	e.Stat = fmt.Sprintf("%d %d %d %d %d %d %o", st.Dev, st.Ino, st.Size, mtime.UnixNano(), ctime.UnixNano(), st.Nlink, st.Mode)
	e.Changed = mtime
	if ctime.After(mtime) {
		e.Changed = ctime
	}
}

func capability(p string) bool {
	n, err := syscall.Getxattr(p, "security.capability", nil)
	return err == nil && n > 0
}
