package frontend

import (
	"context"
	"io/fs"
	"path"

	"github.com/moby/buildkit/frontend/gateway/client"
	fstypes "github.com/tonistiigi/fsutil/types"
)

// dirReader is the part of a solved build context's reference that source
// lookups use.
type dirReader interface {
	ReadDir(ctx context.Context, req client.ReadDirRequest) ([]*fstypes.Stat, error)
}

// contextLookup returns the stat of a clean, relative context path, or an
// error wrapping fs.ErrNotExist when the context does not hold it.
func contextLookup(ctx context.Context, ref dirReader) func(src string) (*fstypes.Stat, error) {
	// listings maps a directory to its entries by name; a nil map records a
	// directory that does not exist.
	listings := map[string]map[string]*fstypes.Stat{}
	var list func(dir string) (map[string]*fstypes.Stat, error)
	list = func(dir string) (map[string]*fstypes.Stat, error) {
		if entries, ok := listings[dir]; ok {
			return entries, nil
		}
		stats, err := ref.ReadDir(ctx, client.ReadDirRequest{Path: dir})
		if err != nil {
			if dir == "." {
				return nil, err
			}
			// Either the directory is missing or the context cannot be
			// read; the parent's listing tells which.
			parent, perr := list(path.Dir(dir))
			if perr != nil {
				return nil, err
			}
			if st, ok := parent[path.Base(dir)]; ok && (fs.FileMode(st.Mode).IsDir() || fs.FileMode(st.Mode)&fs.ModeSymlink != 0) {
				return nil, err // it is there (or a link to it): a real failure
			}
			listings[dir] = nil
			return nil, nil
		}
		entries := make(map[string]*fstypes.Stat, len(stats))
		for _, st := range stats {
			entries[path.Base(st.Path)] = st
		}
		listings[dir] = entries
		return entries, nil
	}
	return func(src string) (*fstypes.Stat, error) {
		src = path.Clean(src)
		if src == "." {
			return &fstypes.Stat{Path: ".", Mode: uint32(fs.ModeDir | 0o755)}, nil
		}
		entries, err := list(path.Dir(src))
		if err != nil {
			return nil, err
		}
		st, ok := entries[path.Base(src)]
		if !ok {
			return nil, &fs.PathError{Op: "lookup", Path: src, Err: fs.ErrNotExist}
		}
		return st, nil
	}
}
