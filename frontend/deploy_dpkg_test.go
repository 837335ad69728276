package frontend

import (
	"context"
	"fmt"
	"path"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/buildkit/frontend/gateway/client"
	fstypes "github.com/tonistiigi/fsutil/types"

	"github.com/tdfs-kit/tdfs/cir"
)

// filesRef is a reference whose files are a map, read as the gateway
// reads them (ReadDir of a folder, ReadFile with an optional range).
type filesRef struct {
	client.Reference
	files map[string]string
}

func (r filesRef) ReadDir(_ context.Context, req client.ReadDirRequest) ([]*fstypes.Stat, error) {
	var out []*fstypes.Stat
	for p := range r.files {
		if path.Dir(p) == req.Path {
			out = append(out, &fstypes.Stat{Path: path.Base(p), Mode: 0o644})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("open %s: %w", req.Path, syscall.ENOENT)
	}
	return out, nil
}

func (r filesRef) ReadFile(_ context.Context, req client.ReadRequest) ([]byte, error) {
	dt, ok := r.files[req.Filename]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", req.Filename, syscall.ENOENT)
	}
	if req.Range != nil {
		dt = dt[min(req.Range.Offset, len(dt)):min(req.Range.Offset+req.Range.Length, len(dt))]
	}
	return []byte(dt), nil
}

// The base's dpkg configuration is read in dpkg's order and bounded: a
// file over 1 MiB and a folder of more than 256 files are refused, naming
// them, instead of read whole.
func TestReadDpkgFiltersBounded(t *testing.T) {
	rec := &cir.Record{Dependencies: cir.Dependencies{Apt: []string{"p"}}}
	ctx := context.Background()
	ref := filesRef{files: map[string]string{
		"/etc/dpkg/dpkg.cfg.d/docker": "path-exclude /usr/share/doc/*\n",
		"/etc/dpkg/dpkg.cfg.d/a-keep": "path-include /usr/share/doc/*/copyright\n",
		"/etc/dpkg/dpkg.cfg":          "# none\n",
	}}
	got, err := readDpkgFilters(ctx, ref, rec)
	if err != nil || got.Env() != "path-include /usr/share/doc/*/copyright\npath-exclude /usr/share/doc/*\n" {
		t.Fatalf("filters %q, %v", got.Env(), err)
	}

	huge := filesRef{files: map[string]string{"/etc/dpkg/dpkg.cfg.d/docker": "# " + strings.Repeat("x", maxDpkgConfig) + "\n"}}
	if _, err := readDpkgFilters(ctx, huge, rec); err == nil || err.Error() != "the base's /etc/dpkg/dpkg.cfg.d/docker is over 1 MiB, more than a deploy reads of a dpkg configuration file" {
		t.Errorf("a 1 MiB configuration file: %v", err)
	}

	many := filesRef{files: map[string]string{}}
	for i := range maxDpkgConfigFiles + 1 {
		many.files[fmt.Sprintf("/etc/dpkg/dpkg.cfg.d/f%03d", i)] = "\n"
	}
	if _, err := readDpkgFilters(ctx, many, rec); err == nil || err.Error() != "the base's /etc/dpkg/dpkg.cfg.d holds 257 files, more than the 256 a deploy reads" {
		t.Errorf("257 configuration files: %v", err)
	}
}

// The base's /etc/debian_version is read no further than 4 KiB.
func TestReadInterpreterBounded(t *testing.T) {
	ref := filesRef{files: map[string]string{"/usr/bin/python3.11": "", "/etc/debian_version": "12.7\n"}}
	got, err := readInterpreter(context.Background(), ref)
	if err != nil || got.Version != "3.11" || got.DebianRelease != "12" {
		t.Fatalf("interpreter %+v, %v", got, err)
	}
	ref.files["/etc/debian_version"] = strings.Repeat("1", 5000)
	if _, err := readInterpreter(context.Background(), ref); err == nil || err.Error() != "the base's /etc/debian_version is over 4 KiB: not a Debian release" {
		t.Errorf("a 5000-byte /etc/debian_version: %v", err)
	}
}
