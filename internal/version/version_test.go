package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/tdfs-kit/tdfs", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "59fc214abc"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	if got, want := FromBuildInfo(bi).Line("2dfs"), "2dfs github.com/tdfs-kit/tdfs v0.3.0 59fc214abc.m go1.26.8"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	bi.Settings[2].Value = "false"
	if got := FromBuildInfo(bi).Revision; got != "59fc214abc" {
		t.Errorf("clean tree: revision %q", got)
	}
	if got := FromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8"}); got.Version != "(devel)" || got.Revision != "unknown" || got.Module != "unknown" {
		t.Errorf("no VCS stamp: %+v", got)
	}
}

// A test binary has build info too: the module path is ours.
func TestRead(t *testing.T) {
	if got := Read(); got.Module != "github.com/tdfs-kit/tdfs" || !strings.HasPrefix(got.Go, "go") {
		t.Errorf("Read() = %+v", got)
	}
}
