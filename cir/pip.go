package cir

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Debian releases and their glibc, for the manylinux tags a base accepts.
// A base of another release needs an entry here.
var debianGlibc = map[string]int{"11": 31, "12": 36, "13": 41}

// pipArch maps an OCI architecture to the machine name of wheel tags.
var pipArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

// Interpreter is the Python of an assembled image, read from its base.
type Interpreter struct {
	// Version is "3.11".
	Version string
	// DebianRelease is the major version in /etc/debian_version ("12").
	DebianRelease string
}

// SitePackages is where wheels go: Debian's python3 puts
// /usr/local/lib/python3.X/dist-packages on sys.path for locally installed
// packages, apart from the Debian-packaged ones in /usr/lib/python3.
func (i Interpreter) SitePackages() string {
	return "/usr/local/lib/python" + i.Version + "/dist-packages"
}

// ABI is the CPython ABI tag ("cp311").
func (i Interpreter) ABI() string { return "cp" + strings.ReplaceAll(i.Version, ".", "") }

var pyBin = regexp.MustCompile(`^python(3\.[0-9]+)$`)

// FindInterpreter picks the interpreter of a base from the names in its
// /usr/bin and the content of /etc/debian_version.
func FindInterpreter(usrBin []string, debianVersion string) (Interpreter, error) {
	var versions []string
	for _, n := range usrBin {
		if m := pyBin.FindStringSubmatch(n); m != nil {
			versions = append(versions, m[1])
		}
	}
	if len(versions) == 0 {
		return Interpreter{}, fmt.Errorf("the base has no /usr/bin/python3.X; pip dependencies need a base with python3")
	}
	if len(versions) > 1 {
		return Interpreter{}, fmt.Errorf("the base has several interpreters (%s); pip dependencies need exactly one python3.X in /usr/bin", strings.Join(versions, ", "))
	}
	rel, _, _ := strings.Cut(strings.TrimSpace(debianVersion), ".")
	if _, ok := debianGlibc[rel]; !ok {
		return Interpreter{}, fmt.Errorf("the base's /etc/debian_version says %q; a CIR base is Debian 11, 12 or 13", strings.TrimSpace(debianVersion))
	}
	return Interpreter{Version: versions[0], DebianRelease: rel}, nil
}

// PlatformTags lists the wheel platform tags an interpreter on arch accepts,
// most specific first, as pip download --platform wants them listed: pip
// matches the given tags exactly.
func (i Interpreter) PlatformTags(arch string) ([]string, error) {
	m, ok := pipArch[arch]
	if !ok {
		return nil, fmt.Errorf("no wheel platform tag is known for architecture %q", arch)
	}
	var tags []string
	for minor := debianGlibc[i.DebianRelease]; minor >= 17; minor-- {
		tags = append(tags, fmt.Sprintf("manylinux_2_%d_%s", minor, m))
	}
	// The legacy aliases of manylinux_2_17, _2_12 and _2_5.
	tags = append(tags, "manylinux2014_"+m)
	if m == "x86_64" || m == "i686" {
		tags = append(tags, "manylinux2010_"+m, "manylinux1_"+m)
	}
	return append(tags, "linux_"+m), nil
}

// Wheel is one resolved wheel of a closure.
type Wheel struct {
	Name    string
	Version string
	// URL is where the index serves it; Digest pins its content.
	URL    string
	Digest digest.Digest
	// Filename is the wheel's file name (name-version-tags.whl).
	Filename string
	// Size is the wheel's size in bytes, which the layer budget groups by:
	// pip's report has none, resolve.sh asks the index (ParseSizes).
	Size int64
}

// pipReport is the part of pip's installation report (pip install
// --dry-run --report, format version 1) the lazy-builder reads.
type pipReport struct {
	Version string `json:"version"`
	Install []struct {
		DownloadInfo struct {
			URL         string `json:"url"`
			ArchiveInfo struct {
				Hash   string            `json:"hash"`
				Hashes map[string]string `json:"hashes"`
			} `json:"archive_info"`
		} `json:"download_info"`
		Metadata struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"metadata"`
	} `json:"install"`
}

// ParseReport reads pip's report into the closure's wheels, sorted by
// normalized name: the column order of the wheel row.
func ParseReport(data []byte) ([]Wheel, error) {
	var r pipReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("pip report: %w", err)
	}
	if r.Version != "1" {
		return nil, fmt.Errorf("pip report: format version %q, want 1 (pip 23 and later)", r.Version)
	}
	var out []Wheel
	for _, it := range r.Install {
		u, err := url.Parse(it.DownloadInfo.URL)
		if err != nil {
			return nil, fmt.Errorf("pip report: %s: %w", it.Metadata.Name, err)
		}
		name := path.Base(u.Path)
		if !strings.HasSuffix(name, ".whl") {
			return nil, fmt.Errorf("pip report: %s %s resolved to %s, which is no wheel", it.Metadata.Name, it.Metadata.Version, name)
		}
		sum := it.DownloadInfo.ArchiveInfo.Hashes["sha256"]
		if sum == "" {
			if algo, hex, ok := strings.Cut(it.DownloadInfo.ArchiveInfo.Hash, "="); ok && algo == "sha256" {
				sum = hex
			}
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, sum)
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("pip report: %s %s from %s has no sha256 (the index must give wheel hashes, PEP 503 #sha256=...): %w", it.Metadata.Name, it.Metadata.Version, redact(u), err)
		}
		out = append(out, Wheel{Name: normalize(it.Metadata.Name), Version: it.Metadata.Version, URL: u.String(), Digest: d, Filename: name})
	}
	slices.SortFunc(out, func(a, b Wheel) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetSizes sets each wheel's Size from sizes.py's lines (its sha256, a
// space, its size), refusing a wheel without one.
func SetSizes(wheels []Wheel, text string) error {
	sizes := map[string]int64{}
	for _, l := range strings.Split(text, "\n") {
		sum, n, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("pip resolve: size %q of the wheel with sha256 %s is not a size", n, sum)
		}
		sizes[sum] = v
	}
	for i := range wheels {
		n, ok := sizes[wheels[i].Digest.Encoded()]
		if !ok {
			return fmt.Errorf("pip resolve: no size was read for wheel %s %s from %s (the layer budget needs it)", wheels[i].Name, wheels[i].Version, Redact(wheels[i].URL))
		}
		wheels[i].Size = n
	}
	return nil
}

func normalize(s string) string {
	return regexp.MustCompile(`[-_.]+`).ReplaceAllString(strings.ToLower(s), "-")
}

// Redact is a URL without credentials, query or fragment, for messages.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparsable URL)"
	}
	return redact(u)
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// Machine is the platform_machine of Python on an OCI architecture, the
// machine name of its wheel tags.
func Machine(arch string) (string, error) {
	m, ok := pipArch[arch]
	if !ok {
		return "", fmt.Errorf("no wheel platform tag is known for architecture %q", arch)
	}
	return m, nil
}

// Origin is scheme://host[:port] of a URL, "" if it is none.
func Origin(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

// Missing is a requirement of the closure with no wheel for the platform.
type Missing struct {
	Requirement string
	// Path is the chain of "name version" that required it, from the
	// direct requirement down; "" for a direct one.
	Path string
}

func (m Missing) String() string {
	if m.Path == "" {
		return m.Requirement
	}
	return m.Requirement + " (via " + m.Path + ")"
}

// ParseMissing reads missing.py's lines: the requirement, a tab, the path.
func ParseMissing(text string) []Missing {
	var out []Missing
	for _, l := range strings.Split(text, "\n") {
		req, path, _ := strings.Cut(l, "\t")
		if req = strings.TrimSpace(req); req != "" {
			out = append(out, Missing{Requirement: req, Path: strings.TrimSpace(path)})
		}
	}
	return out
}

// ResolveError turns what the resolver left (its log and the requirements,
// direct or transitive, it could not find) into the error a user reads:
// every missing requirement at once with the platform and the path that
// required it, or the index that could not be reached, or the log's last
// lines.
func ResolveError(platform, index string, missing []Missing, log string) error {
	if u, err := url.Parse(index); err == nil {
		index = redact(u)
	}
	// An index that cannot be reached also leaves every requirement
	// unfound, so it is looked for first.
	for _, sign := range []string{"Failed to establish a new connection", "Connection refused", "Name or service not known", "Read timed out", "Connection to"} {
		if strings.Contains(log, sign) {
			return fmt.Errorf("pip: index %s cannot be reached: %s", index, lastLine(log, sign))
		}
	}
	if len(missing) > 0 {
		var names []string
		for _, m := range missing {
			names = append(names, m.String())
		}
		return fmt.Errorf("pip: no wheel for %s (Python %s) on %s for: %s", platform, pythonOf(log), index, strings.Join(names, ", "))
	}
	return fmt.Errorf("pip could not resolve the dependencies for %s:\n%s", platform, tail(log, 20))
}

// pythonOf is filled by the caller's log header ("python 3.11").
func pythonOf(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if v, ok := strings.CutPrefix(l, "2dfs: python "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func lastLine(log, sign string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sign) {
			return strings.TrimSpace(lines[i])
		}
	}
	return ""
}

func tail(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
