package cir

import (
	"bufio"
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// DpkgFilter is one path-exclude or path-include of a base's dpkg
// configuration: dpkg leaves out of every package it unpacks the paths the
// last matching filter excludes (docs/cir.md, "Unpacking"). The lazy-builder
// applies the base's filters to the packages it unpacks with dpkg-deb -x,
// which reads no configuration, so a package layer holds what apt-get
// install in the base would have left.
type DpkgFilter struct {
	Include bool
	// Pattern is an fnmatch(3) glob without flags: "*" matches "/" too.
	Pattern string
}

// DpkgFilters are the filters in dpkg's order: the last match wins.
type DpkgFilters []DpkgFilter

// DpkgConfigDir and DpkgConfigFile are where dpkg reads its options: every
// file of the folder whose name is valid (DpkgConfigName), in name order,
// then the file.
const (
	DpkgConfigDir  = "/etc/dpkg/dpkg.cfg.d"
	DpkgConfigFile = "/etc/dpkg/dpkg.cfg"
)

// DpkgConfigName says whether dpkg reads a file of DpkgConfigDir: a name of
// letters, digits, "_" and "-" not starting with "." (dpkg skips the rest,
// such as docker.dpkg-old or a.cfg).
func DpkgConfigName(name string) bool {
	if name == "" || name[0] == '.' {
		return false
	}
	for _, c := range []byte(name) {
		if !isAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// DpkgConfigOrder sorts the names of DpkgConfigDir dpkg reads in the order
// it reads them (alphasort; byte order, as in the C locale dpkg runs in in a
// container) and drops the others.
func DpkgConfigOrder(names []string) []string {
	var out []string
	for _, n := range names {
		if DpkgConfigName(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// ParseDpkgConfig reads the path filters of one dpkg configuration file,
// named name in errors, as dpkg reads its options: a line is an option
// name of letters, digits and "-", then a space or "=" and the value, with
// surrounding quotes removed; lines starting with "#" and empty ones are
// skipped. Options other than path-exclude and path-include are not the
// lazy-builder's and are ignored; a filter without a value, or with
// unbalanced quotes, is an error, as dpkg (and so apt-get install in the
// base) stops on it. An empty value ("path-exclude =") is a filter of the
// empty pattern, as in dpkg.
func ParseDpkgConfig(name string, data []byte) (DpkgFilters, error) {
	var out DpkgFilters
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r\n\v\f")
		if line == "" || line[0] == '#' {
			continue
		}
		i := 0
		for i < len(line) && (isAlnum(line[i]) || line[i] == '-') {
			i++
		}
		opt := line[:i]
		if opt != "path-exclude" && opt != "path-include" {
			continue
		}
		if i == len(line) {
			return nil, fmt.Errorf("%s:%d: %s needs a pattern", name, n, opt)
		}
		value := line[i+1:]
		value = strings.TrimPrefix(value, "=")
		value = strings.TrimLeft(value, " \t\r\n\v\f")
		if value != "" && (value[0] == '"' || value[0] == '\'') {
			if len(value) < 2 || value[len(value)-1] != value[0] {
				return nil, fmt.Errorf("%s:%d: unbalanced quotes in %q", name, n, line)
			}
			value = value[1 : len(value)-1]
		}
		out = append(out, DpkgFilter{Include: opt == "path-include", Pattern: value})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// Env is the filters as deb.sh takes them (DPKG_FILTERS): one
// "path-exclude PATTERN" or "path-include PATTERN" a line, in order; "" for
// none. It is in the cache key of every package layer, so a package
// unpacked for bases with the same filters is the same layer.
func (fs DpkgFilters) Env() string {
	var b strings.Builder
	for _, f := range fs {
		if f.Include {
			b.WriteString("path-include ")
		} else {
			b.WriteString("path-exclude ")
		}
		b.WriteString(f.Pattern)
		b.WriteByte('\n')
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
