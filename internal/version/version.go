// Package version says which build of this module a binary is: the module
// version and the VCS commit the Go toolchain stamps into every binary
// (runtime/debug build info), so no release step has to pass -ldflags.
// It imports nothing but the standard library, so the proxy can use it.
package version

import (
	"fmt"
	"runtime/debug"
)

// Info is what a binary knows about its own build.
type Info struct {
	// Module is the main module's path.
	Module string
	// Version is the module version: a tag, a pseudo-version, or "(devel)"
	// when the toolchain could not derive one (a build outside a Git
	// checkout, as in the image's Dockerfile stage).
	Version string
	// Revision is the VCS commit, with ".m" appended when the working tree
	// had uncommitted changes (BuildKit's convention), or "unknown".
	Revision string
	// Go is the toolchain that built the binary.
	Go string
}

// Read returns the running binary's build info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Module: "unknown", Version: "unknown", Revision: "unknown", Go: "unknown"}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from build info.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Module: bi.Main.Path, Version: bi.Main.Version, Revision: "unknown", Go: bi.GoVersion}
	if i.Module == "" {
		i.Module = "unknown"
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	var revision string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision != "" {
		i.Revision = revision
		if modified {
			i.Revision += ".m"
		}
	}
	return i
}

// Line is the one-line form every command prints, in the shape of BuildKit's
// own: "NAME MODULE VERSION REVISION GO".
func (i Info) Line(name string) string {
	return fmt.Sprintf("%s %s %s %s %s", name, i.Module, i.Version, i.Revision, i.Go)
}
