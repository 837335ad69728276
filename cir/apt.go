package cir

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Deb is one package of an apt closure.
type Deb struct {
	Name     string
	Version  string
	Arch     string
	URL      string
	Filename string
	Size     int64
	Digest   digest.Digest
}

// apt-get install --print-uris prints, for each package to download:
//
//	'http://deb.debian.org/debian/pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb' zlib1g_1%3a1.2.13.dfsg-1_amd64.deb 87776 SHA256:d7dd...
var uriLine = regexp.MustCompile(`^'([^']+)' (\S+) ([0-9]+) (\S+)$`)

// ParseURIs reads apt-get's --print-uris output into the closure's
// packages, sorted by name: the column order of the apt row.
func ParseURIs(out string) ([]Deb, error) {
	var debs []Deb
	for _, line := range strings.Split(out, "\n") {
		m := uriLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		algo, sum, _ := strings.Cut(m[4], ":")
		if algo != "SHA256" {
			return nil, fmt.Errorf("apt: %s comes with a %s checksum only; the repository must give SHA256", m[2], algo)
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, strings.ToLower(sum))
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("apt: %s: %w", m[2], err)
		}
		file, err := url.PathUnescape(m[2])
		if err != nil {
			return nil, fmt.Errorf("apt: %s: %w", m[2], err)
		}
		parts := strings.Split(strings.TrimSuffix(file, ".deb"), "_")
		if len(parts) != 3 {
			return nil, fmt.Errorf("apt: %s is not name_version_arch.deb", m[2])
		}
		size, _ := strconv.ParseInt(m[3], 10, 64)
		debs = append(debs, Deb{Name: parts[0], Version: parts[1], Arch: parts[2], URL: m[1], Filename: strings.ReplaceAll(file, ":", "%3a"), Size: size, Digest: d})
	}
	slices.SortFunc(debs, func(a, b Deb) int { return strings.Compare(a.Name, b.Name) })
	return debs, nil
}

var (
	aptUnknown   = regexp.MustCompile(`E: Unable to locate package (\S+)`)
	aptNoCand    = regexp.MustCompile(`E: Package '([^']+)' has no installation candidate`)
	aptNoVersion = regexp.MustCompile(`E: Version '([^']+)' for '([^']+)' was not found`)
	aptErr       = regexp.MustCompile(`(?m)^Err:\S* (.*)$`)
)

// AptError turns apt's log into the error a user reads: every package apt
// cannot find named at once, with the platform, or the repository that
// could not be reached.
func AptError(platform, log string) error {
	if m := aptErr.FindAllStringSubmatch(log, -1); len(m) > 0 {
		var lines []string
		for _, x := range m {
			lines = append(lines, strings.TrimSpace(x[1]))
		}
		return fmt.Errorf("apt: the base's repository cannot be reached: %s", strings.Join(lines, "; "))
	}
	var missing []string
	for _, m := range aptUnknown.FindAllStringSubmatch(log, -1) {
		missing = append(missing, m[1])
	}
	for _, m := range aptNoCand.FindAllStringSubmatch(log, -1) {
		missing = append(missing, m[1])
	}
	for _, m := range aptNoVersion.FindAllStringSubmatch(log, -1) {
		missing = append(missing, m[2]+"="+m[1])
	}
	if len(missing) > 0 {
		return fmt.Errorf("apt: no package for %s in the base's repositories: %s", platform, strings.Join(missing, ", "))
	}
	return fmt.Errorf("apt could not resolve the dependencies for %s:\n%s", platform, tail(log, 20))
}

// DebianArch is the Debian architecture of an OCI platform.
func DebianArch(p ocispec.Platform) (string, error) {
	switch {
	case p.Architecture == "arm" && (p.Variant == "v7" || p.Variant == ""):
		return "armhf", nil
	case p.Architecture == "arm" && (p.Variant == "v5" || p.Variant == "v6"):
		return "armel", nil
	case p.Architecture == "386":
		return "i386", nil
	case p.Architecture == "amd64", p.Architecture == "arm64", p.Architecture == "ppc64le", p.Architecture == "s390x", p.Architecture == "riscv64", p.Architecture == "mips64le":
		return p.Architecture, nil
	}
	return "", fmt.Errorf("no Debian architecture is known for %s/%s", p.Architecture, p.Variant)
}
