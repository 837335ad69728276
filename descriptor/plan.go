package descriptor

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/tdfs-kit/tdfs/field"
)

// Copy is one resolved src → dst pair of an allotment.
type Copy struct {
	// Src is the cleaned path in the build context.
	Src string
	// Dst is the final absolute path the source lands at: for a directory
	// the directory its contents go into, for a file the file itself (a dst
	// ending in "/" places the file inside it, as COPY does).
	Dst string
	Dir bool
	// URL is the full URL of a remote file (Src is then its redacted form,
	// safe to show); Checksum pins it ("" when the allotment is unpinned).
	URL      string
	Checksum string
}

// PlannedAllotment is an allotment whose sources were found in the build
// context: what llb.Convert turns into one layer.
type PlannedAllotment struct {
	Index  int
	Cell   field.Cell
	Copies []Copy
	// From is the image or named context the copies' Src paths are read
	// in; "" for the build context.
	From string
	// AuthSecret names the secret with the Authorization header for URLs.
	AuthSecret string
}

// Dsts lists the final destination paths of the allotment.
func (p PlannedAllotment) Dsts() []string {
	out := make([]string, len(p.Copies))
	for i, c := range p.Copies {
		out[i] = c.Dst
	}
	return out
}

// StatFunc returns the mode of a context path, symlinks followed as the
// copy follows them; only its type bits matter. It returns an error wrapping
// fs.ErrNotExist when the path is not in the context, and a *SpecialFileError
// when it finds a FIFO, socket or device inside a folder.
type StatFunc func(src string) (fs.FileMode, error)

// SpecialFileError is a source, or an entry inside a source folder, that is
// no regular file, folder or symlink. BuildKit's copy would recreate it in
// the image (a FIFO, a socket, a device node: a block device even becomes a
// character device), which no field wants, so the plan refuses it.
type SpecialFileError struct {
	// Path is the entry in the build context.
	Path string
	Mode fs.FileMode
}

func (e *SpecialFileError) Error() string {
	return fmt.Sprintf("%s is a %s; only regular files, folders and symlinks can be copied into an allotment", e.Path, fileKind(e.Mode))
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return "special file (" + m.Type().String() + ")"
	}
}

// Copyable says whether BuildKit's copy of an entry of this mode gives a
// regular file, folder or symlink.
func Copyable(m fs.FileMode) bool {
	return m.IsRegular() || m.IsDir() || m&fs.ModeSymlink != 0
}

// StatFromFunc returns the mode of a path in the image or named context
// "from", like StatFunc.
type StatFromFunc func(from, src string) (fs.FileMode, error)

// Plan resolves every allotment against the build context and checks that
// no two copies write the same path. Allotments come back in row-major
// order, the order of their layers. A descriptor with "from" keys needs
// PlanSources.
func (d *Descriptor) Plan(stat StatFunc) ([]PlannedAllotment, error) {
	return d.PlanSources(stat, nil)
}

// PlanSources is Plan with a way to look paths up in other images and named
// contexts. URL sources are files and are not looked up: their checksum
// vouches for them, and the build fetches them.
func (d *Descriptor) PlanSources(stat StatFunc, statFrom StatFromFunc) ([]PlannedAllotment, error) {
	p := &parser{file: d.Filename}
	type placed struct {
		dst   string
		a     *Allotment
		entry int
	}
	var all []placed
	planned := make([]PlannedAllotment, 0, len(d.Allotments))
	for ai := range d.Allotments {
		a := &d.Allotments[ai]
		pl := PlannedAllotment{Index: a.Index, Cell: a.Cell, From: a.From, AuthSecret: a.AuthSecret}
		for j, src := range a.Src {
			var c Copy
			switch {
			case IsURL(src):
				c = Copy{Src: RedactURL(src), URL: src}
				if j < len(a.Checksum) {
					c.Checksum = a.Checksum[j]
				}
			case a.From != "":
				clean := fromPath(src)
				mode, err := lookupFrom(statFrom, a.From, clean)
				if err == nil && !Copyable(mode) {
					err = &SpecialFileError{Path: clean, Mode: mode}
				}
				if err != nil {
					msg := fmt.Sprintf("cannot read it from %q: %v", a.From, err)
					var special *SpecialFileError
					switch {
					case errors.As(err, &special):
						msg = fmt.Sprintf("in %q: %s", a.From, special.Error())
					case errors.Is(err, fs.ErrNotExist):
						msg = fmt.Sprintf("not found in %q (the named build context of that name, or else the image)", a.From)
					}
					p.add(a.SrcPos[j], a.Index, &a.Cell, srcLabel(j, src), msg)
					continue
				}
				c = Copy{Src: clean, Dir: mode.IsDir()}
			default:
				clean := path.Clean(src)
				mode, err := stat(clean)
				if err == nil && !Copyable(mode) {
					err = &SpecialFileError{Path: clean, Mode: mode}
				}
				if err != nil {
					msg := fmt.Sprintf("cannot read it from the build context: %v", err)
					var special *SpecialFileError
					switch {
					case errors.As(err, &special):
						msg = special.Error()
					case errors.Is(err, fs.ErrNotExist):
						msg = "not found in the build context (is it excluded by .dockerignore, or outside the context directory?)"
					}
					p.add(a.SrcPos[j], a.Index, &a.Cell, fmt.Sprintf("src[%d] %q", j, src), msg)
					continue
				}
				c = Copy{Src: clean, Dir: mode.IsDir()}
			}
			dst := path.Clean(a.Dst[j])
			if !c.Dir && strings.HasSuffix(a.Dst[j], "/") {
				name := path.Base(c.Src)
				if c.URL != "" {
					name = urlFileName(c.URL)
				}
				if name == "" {
					p.add(a.DstPos[j], a.Index, &a.Cell, fmt.Sprintf("dst[%d] %q", j, a.Dst[j]), fmt.Sprintf("ends in / but %s names no file to put in it; give the full destination path", srcLabel(j, src)))
					continue
				}
				dst = path.Join(dst, name)
			}
			c.Dst = dst
			pl.Copies = append(pl.Copies, c)
			all = append(all, placed{dst: dst, a: a, entry: j})
		}
		planned = append(planned, pl)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}

	// Sorted by path components, every path directly follows its ancestors
	// (or an equal path), so a stack of open ancestors finds each overlap.
	slices.SortStableFunc(all, func(x, y placed) int {
		return slices.Compare(strings.Split(x.dst, "/"), strings.Split(y.dst, "/"))
	})
	var stack []placed
	for _, cur := range all {
		for len(stack) > 0 && !isAncestorOrSelf(stack[len(stack)-1].dst, cur.dst) {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 {
			prev := stack[len(stack)-1]
			what := "writes inside " + prev.dst
			if prev.dst == cur.dst {
				what = "writes the same path"
			}
			other := fmt.Sprintf("allotments[%d] (row %d, col %d) dst[%d]", prev.a.Index, prev.a.Cell.Row, prev.a.Cell.Col, prev.entry)
			p.add(cur.a.DstPos[cur.entry], cur.a.Index, &cur.a.Cell, fmt.Sprintf("dst[%d] %q", cur.entry, cur.dst),
				fmt.Sprintf("%s as %s; allotments must not overlap", what, other))
		}
		stack = append(stack, cur)
	}
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	slices.SortFunc(planned, func(x, y PlannedAllotment) int { return x.Cell.Compare(y.Cell) })
	return planned, nil
}

func isAncestorOrSelf(dir, p string) bool {
	return dir == p || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func lookupFrom(statFrom StatFromFunc, from, src string) (fs.FileMode, error) {
	if statFrom == nil {
		return 0, errors.New("this build cannot read other images or named contexts")
	}
	return statFrom(from, src)
}
