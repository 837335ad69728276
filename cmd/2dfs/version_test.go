package main

import (
	"bytes"
	"testing"

	"github.com/tdfs-kit/tdfs/internal/version"
)

func TestVersionCommand(t *testing.T) {
	cmd := newVersionCommand(version.Info{Module: "github.com/tdfs-kit/tdfs", Version: "v0.3.0", Revision: "59fc214abc.m", Go: "go1.26.8"})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "2dfs github.com/tdfs-kit/tdfs v0.3.0 59fc214abc.m go1.26.8\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	cmd.SetArgs([]string{"extra"})
	if err := cmd.Execute(); err == nil {
		t.Error("version accepted an argument")
	}
}
