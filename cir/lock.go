package cir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// LockVersion is the version of the lock file format this package writes
// and the only one it reads (docs/cir.md, "Lock files").
const LockVersion = 1

// MaxLockBytes caps what ReadLock parses (and what the frontend reads of a
// lock in the build context): a closure of a few hundred packages per
// platform is tens of kilobytes.
const MaxLockBytes = 16 << 20

const maxLockBytes = MaxLockBytes

// Lock is a lock file: the closure resolved per platform for the inputs of
// one CIR, so a deploy with it is repeatable. Its bytes are stable: fields in
// a fixed order, platforms sorted, packages sorted by name.
type Lock struct {
	Version int `json:"version"`
	// Inputs are what the closures were resolved from; a CIR with other
	// inputs is refused (LockInputs.Check).
	Inputs LockInputs `json:"cir"`
	// Platforms are the closures, sorted by platform, each listed once.
	Platforms []LockPlatform `json:"platforms"`
}

// LockInputs are the parts of a CIR record a resolution depends on: the base
// by digest, the direct dependencies and the index. The application and the
// config are not among them: a new version of the application keeps its lock.
type LockInputs struct {
	Base         string       `json:"base"`
	Dependencies Dependencies `json:"dependencies"`
	PipIndex     string       `json:"pipIndex,omitempty"`
}

// LockPlatform is the closure of one platform.
type LockPlatform struct {
	Platform string `json:"platform"`
	// Python is the base's interpreter the wheels were resolved for.
	Python string      `json:"python,omitempty"`
	Debs   []LockDeb   `json:"debs,omitempty"`
	Wheels []LockWheel `json:"wheels,omitempty"`
}

// LockDeb is one package of an apt closure.
type LockDeb struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	URL     string `json:"url"`
	// Size is the .deb's size, which the layer budget groups by.
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

// LockWheel is one wheel of a pip closure.
type LockWheel struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Filename string `json:"filename"`
	URL      string `json:"url"`
	// Size is the wheel's size, which the layer budget groups by.
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

// InputsOf returns the lock inputs of a CIR record.
func InputsOf(r *Record) LockInputs {
	return LockInputs{Base: r.Base.Ref, Dependencies: r.Dependencies, PipIndex: r.Resolver.PipIndex}
}

// Check says how a lock's inputs differ from a CIR's (want): nil when they
// are the same. file names the lock in the message.
func (l LockInputs) Check(file string, want LockInputs) error {
	var diffs []string
	if l.Base != want.Base {
		diffs = append(diffs, fmt.Sprintf("base %s, the CIR's is %s", l.Base, want.Base))
	}
	if !slices.Equal(l.Dependencies.Apt, want.Dependencies.Apt) {
		diffs = append(diffs, fmt.Sprintf("apt %q, the CIR's are %q", l.Dependencies.Apt, want.Dependencies.Apt))
	}
	if !slices.Equal(l.Dependencies.Pip, want.Dependencies.Pip) {
		diffs = append(diffs, fmt.Sprintf("pip %q, the CIR's are %q", l.Dependencies.Pip, want.Dependencies.Pip))
	}
	if l.PipIndex != want.PipIndex {
		diffs = append(diffs, fmt.Sprintf("pipIndex %q, the CIR's is %q", l.PipIndex, want.PipIndex))
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("lock %s was made for another CIR: its %s; re-resolve with --lock-update (or use another lock file)", file, strings.Join(diffs, "; "))
}

// Platform returns the closure of a platform, or nil.
func (l *Lock) Platform(p string) *LockPlatform {
	i := slices.IndexFunc(l.Platforms, func(e LockPlatform) bool { return e.Platform == p })
	if i < 0 {
		return nil
	}
	return &l.Platforms[i]
}

// Set puts the closure of a platform into the lock, replacing the one it
// had, keeping the platforms sorted.
func (l *Lock) Set(e LockPlatform) {
	if old := l.Platform(e.Platform); old != nil {
		*old = e
		return
	}
	l.Platforms = append(l.Platforms, e)
	slices.SortFunc(l.Platforms, func(a, b LockPlatform) int { return strings.Compare(a.Platform, b.Platform) })
}

// NewLockPlatform records a resolved closure.
func NewLockPlatform(platform, python string, debs []Deb, wheels []Wheel) LockPlatform {
	e := LockPlatform{Platform: platform, Python: python}
	for _, d := range debs {
		e.Debs = append(e.Debs, LockDeb{Name: d.Name, Version: d.Version, Arch: d.Arch, URL: d.URL, Size: d.Size, Digest: d.Digest.String()})
	}
	for _, w := range wheels {
		e.Wheels = append(e.Wheels, LockWheel{Name: w.Name, Version: w.Version, Filename: w.Filename, URL: w.URL, Size: w.Size, Digest: w.Digest.String()})
	}
	return e
}

// Closure returns the pinned packages and wheels, as the resolvers give them.
func (e *LockPlatform) Closure() ([]Deb, []Wheel) {
	var debs []Deb
	for _, d := range e.Debs {
		debs = append(debs, Deb{Name: d.Name, Version: d.Version, Arch: d.Arch, URL: d.URL, Filename: DebFilename(d.Name, d.Version, d.Arch), Size: d.Size, Digest: digest.Digest(d.Digest)})
	}
	var wheels []Wheel
	for _, w := range e.Wheels {
		wheels = append(wheels, Wheel{Name: w.Name, Version: w.Version, URL: w.URL, Digest: digest.Digest(w.Digest), Filename: w.Filename, Size: w.Size})
	}
	return debs, wheels
}

// DebFilename is the file name apt gives a package's .deb: the epoch's colon
// escaped, as in the archive's pool.
func DebFilename(name, version, arch string) string {
	return strings.ReplaceAll(fmt.Sprintf("%s_%s_%s.deb", name, version, arch), ":", "%3a")
}

// Encode returns the lock's bytes: indented JSON (one field a line, so a
// lock under version control diffs by package) with a final newline.
func (l *Lock) Encode() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeLock parses and validates a lock; file names it in errors. A lock of
// another version is refused by its version before anything else is read.
func DecodeLock(file string, data []byte) (*Lock, error) {
	if len(data) > maxLockBytes {
		return nil, fmt.Errorf("lock %s: %d bytes, over the %d byte limit", file, len(data), maxLockBytes)
	}
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("lock %s: not valid JSON: %w", file, err)
	}
	switch {
	case head.Version == nil:
		return nil, fmt.Errorf("lock %s: no version", file)
	case *head.Version != LockVersion:
		return nil, fmt.Errorf("lock %s: version %d is not known to this 2dfs, which reads version %d; upgrade 2dfs", file, *head.Version, LockVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var l Lock
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("lock %s: data after the lock's JSON object", file)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	return &l, nil
}

// Validate checks the lock on its own: what a deploy relies on when it
// fetches the pinned artifacts without resolving.
func (l *Lock) Validate() error {
	if l.Version != LockVersion {
		return fmt.Errorf("version %d is not known to this 2dfs, which reads version %d", l.Version, LockVersion)
	}
	if l.Inputs.Base == "" {
		return fmt.Errorf("cir.base is empty")
	}
	if len(l.Inputs.Dependencies.Pip) > 0 && l.Inputs.PipIndex == "" {
		return fmt.Errorf("cir: pip dependencies without pipIndex")
	}
	for i, p := range l.Platforms {
		at := fmt.Sprintf("platforms[%d] (%s)", i, p.Platform)
		if !platformRe.MatchString(p.Platform) {
			return fmt.Errorf("platforms[%d]: %q is not os/arch[/variant]", i, p.Platform)
		}
		if i > 0 && l.Platforms[i-1].Platform >= p.Platform {
			return fmt.Errorf("%s: platforms must be sorted and listed once", at)
		}
		if len(p.Debs) == 0 && len(p.Wheels) == 0 {
			return fmt.Errorf("%s: no packages and no wheels", at)
		}
		if len(l.Inputs.Dependencies.Pip) > 0 && p.Python == "" {
			return fmt.Errorf("%s: wheels need the python version they were resolved for", at)
		}
		for j, d := range p.Debs {
			where := fmt.Sprintf("%s: debs[%d] (%s)", at, j, d.Name)
			if d.Name == "" || d.Version == "" || d.Arch == "" {
				return fmt.Errorf("%s: name, version and arch are required", where)
			}
			if j > 0 && p.Debs[j-1].Name >= d.Name {
				return fmt.Errorf("%s: packages must be sorted by name and listed once", where)
			}
			if d.Size <= 0 {
				return fmt.Errorf("%s: size %d is not a .deb's size", where, d.Size)
			}
			if err := checkArtifact(d.URL, d.Digest); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		for j, w := range p.Wheels {
			where := fmt.Sprintf("%s: wheels[%d] (%s)", at, j, w.Name)
			if w.Name == "" || w.Version == "" {
				return fmt.Errorf("%s: name and version are required", where)
			}
			if j > 0 && p.Wheels[j-1].Name >= w.Name {
				return fmt.Errorf("%s: wheels must be sorted by name and listed once", where)
			}
			if !strings.HasSuffix(w.Filename, ".whl") || strings.ContainsAny(w.Filename, "/\\") {
				return fmt.Errorf("%s: filename %q is not a wheel's file name", where, w.Filename)
			}
			if err := checkArtifact(w.URL, w.Digest); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if w.Size <= 0 {
				return fmt.Errorf("%s: size %d is not a wheel's size", where, w.Size)
			}
		}
	}
	return nil
}

func checkArtifact(u, d string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("url %q is not an http(s) URL", u)
	}
	if p.User != nil {
		return fmt.Errorf("url %s has credentials; a lock never holds them", redact(p))
	}
	if !digestRe.MatchString(d) {
		return fmt.Errorf("digest %q is not a sha256 digest (sha256:64 hex digits)", d)
	}
	return nil
}

// ReadLock reads a lock file: nil and no error when it does not exist.
func ReadLock(file string) (*Lock, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	defer f.Close()
	// Read at most one byte over the limit, so that a huge file (or a
	// device that never ends) is refused without being read whole.
	data, err := io.ReadAll(io.LimitReader(f, maxLockBytes+1))
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	return DecodeLock(file, data)
}

// WriteLock writes a lock file atomically: into a temporary file next to it,
// synced, then renamed over it, so a reader (or a crash) never sees half a
// lock.
func WriteLock(file string, l *Lock) error {
	data, err := l.Encode()
	if err != nil {
		return fmt.Errorf("lock %s: %w", file, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return fmt.Errorf("lock %s: %w", file, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("lock %s: %w", file, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("lock %s: %w", file, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("lock %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("lock %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("lock %s: %w", file, err)
	}
	return nil
}
