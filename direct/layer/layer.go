// Package layer writes the layer of one allotment in a single streaming pass:
// it reads the allotment's sources, writes the tar BuildKit's exporter would
// write for the allotment's snapshot, compresses it with BuildKit's own
// compressor and hashes both streams on the way.
//
// What makes the bytes identical to BuildKit's:
//   - entries: the allotment snapshot as llb.AllotmentState copies it: every
//     source at its destination, the folders on the way, owner 0:0, modes
//     normalized like llb.NormalMode, times at the epoch;
//   - order and headers: BuildKit diffs an allotment (a snapshot on scratch)
//     with its overlay differ, a filepath.Walk of the snapshot (names sorted
//     in each folder) fed to containerd's archive.ChangeWriter, whose headers
//     this package builds field by field (PAX format allowed, USTAR when it
//     fits; archive/tar picks, so the Go toolchain must match buildkitd's);
//   - compression: BuildKit's util/compression at the version in go.mod,
//     which wraps klauspost/compress zstd and compress/gzip with the options
//     the exporter uses.
package layer

import (
	"archive/tar"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Normalized modes, as llb.NormalMode ("a=rX,u+w,a-t") leaves them: folders
// and files with any execute bit 0755, other files 0644. Symlinks keep 0777,
// the only mode Linux gives them.
const (
	dirMode     = 0o755
	execMode    = 0o755
	fileMode    = 0o644
	symlinkMode = 0o777
)

// NormalFileMode is the mode a regular file of permission bits perm gets.
func NormalFileMode(perm uint32) int64 {
	if perm&0o111 != 0 {
		return execMode
	}
	return fileMode
}

// Entry is one path of an allotment's layer.
type Entry struct {
	// Path is the clean absolute path in the image.
	Path string
	// Type is tar.TypeReg, tar.TypeDir or tar.TypeSymlink.
	Type byte
	// Mode is the normalized permission bits.
	Mode int64
	// Size is the length of a regular file.
	Size int64
	// Linkname is a symlink's target.
	Linkname string
	// Source is the file a regular entry's bytes come from.
	Source string
	// SourceMtime is Source's modification time when it was scanned; a
	// different one after the read means the file changed under the build.
	SourceMtime time.Time
	// Inode groups hard links: regular entries of one copy that share a
	// non-zero Inode are one file in the snapshot, written once and linked.
	Inode InodeKey
	// Stat is what the scan saw of the source (device, inode, size, times,
	// links, mode): an entry whose Stat is unchanged has unchanged bytes,
	// unless it changed within the timestamp granularity (see Tree.Newest).
	Stat string
	// Changed is the later of the source's mtime and ctime.
	Changed time.Time
}

// InodeKey names a file inside one copy of an allotment.
type InodeKey struct {
	Copy     int
	Dev, Ino uint64
}

// Tree is an allotment's layer content: entries by path, with the folders
// leading to them.
type Tree struct {
	entries  map[string]*Entry
	children map[string][]string
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	return &Tree{entries: map[string]*Entry{}, children: map[string][]string{}}
}

// Add puts e in the tree, creating the folders on its way as the copy's
// CreateDestPath creates them (0755, the epoch). A folder given explicitly
// replaces an implicit one; both are the same entry once normalized.
func (t *Tree) Add(e Entry) {
	e.Path = path.Clean("/" + e.Path)
	if e.Path == "/" {
		return // the layer root is no entry
	}
	for dir := path.Dir(e.Path); dir != "/"; dir = path.Dir(dir) {
		if _, ok := t.entries[dir]; ok {
			break
		}
		t.put(&Entry{Path: dir, Type: tar.TypeDir, Mode: dirMode})
	}
	if old, ok := t.entries[e.Path]; ok {
		*old = e
		return
	}
	t.put(&e)
}

func (t *Tree) put(e *Entry) {
	t.entries[e.Path] = e
	parent := path.Dir(e.Path)
	t.children[parent] = append(t.children[parent], path.Base(e.Path))
}

// Fingerprint hashes the layer's inputs as the scan saw them: every entry's
// path, type, mode, size, link and source metadata, in layer order. Equal
// fingerprints (with equal epoch and compression) mean an equal layer.
func (t *Tree) Fingerprint() digest.Digest {
	d := digest.SHA256.Digester()
	for _, e := range t.Entries() {
		fmt.Fprintf(d.Hash(), "%q %c %o %d %q %q %d/%d/%d\n", e.Path, e.Type, e.Mode, e.Size, e.Linkname, e.Stat, e.Inode.Copy, e.Inode.Dev, e.Inode.Ino)
	}
	return d.Digest()
}

// Newest is the latest change time of any source of the tree.
func (t *Tree) Newest() time.Time {
	var n time.Time
	for _, e := range t.entries {
		if e.Changed.After(n) {
			n = e.Changed
		}
	}
	return n
}

// Len is the number of entries.
func (t *Tree) Len() int { return len(t.entries) }

// Entries lists the entries in the order of the layer's tar: a folder, then
// its children by name, depth first, as filepath.Walk visits the snapshot.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.entries))
	var walk func(dir string)
	walk = func(dir string) {
		names := slices.Clone(t.children[dir])
		slices.Sort(names)
		for _, n := range names {
			p := path.Join(dir, n)
			e := t.entries[p]
			out = append(out, e)
			if e.Type == tar.TypeDir {
				walk(p)
			}
		}
	}
	walk("/")
	return out
}

// Headers returns the tar header of every entry in layer order, with hard
// links resolved as containerd's ChangeWriter resolves them: the first path
// of an inode in walk order carries the bytes, later ones link to it.
func (t *Tree) Headers(epoch time.Time) ([]*tar.Header, []*Entry) {
	entries := t.Entries()
	count := map[InodeKey]int{}
	for _, e := range entries {
		if e.Type == tar.TypeReg && e.Inode != (InodeKey{}) {
			count[e.Inode]++
		}
	}
	first := map[InodeKey]string{}
	hdrs := make([]*tar.Header, len(entries))
	for i, e := range entries {
		h := &tar.Header{
			Typeflag: e.Type,
			Name:     strings.TrimPrefix(e.Path, "/"),
			Mode:     e.Mode,
			ModTime:  epoch.Truncate(time.Second),
			Format:   tar.FormatPAX,
		}
		switch e.Type {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeSymlink:
			h.Linkname = e.Linkname
		case tar.TypeReg:
			h.Size = e.Size
			if count[e.Inode] > 1 {
				if src, ok := first[e.Inode]; ok {
					h.Typeflag, h.Linkname, h.Size = tar.TypeLink, src, 0
				} else {
					first[e.Inode] = h.Name
				}
			}
		}
		hdrs[i] = h
	}
	return hdrs, entries
}
