package frontend

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/gateway/client"

	"github.com/tdfs-kit/tdfs/cir"
)

// maxDpkgConfig bounds each dpkg configuration file read from the base,
// and maxDpkgConfigFiles the files of /etc/dpkg/dpkg.cfg.d: a base's
// configuration is a few lines in a few files (the slim image's: 20 lines
// in one), and a base with a huge one would otherwise be read whole.
const (
	maxDpkgConfig      = 1 << 20
	maxDpkgConfigFiles = 256
)

// readDpkgFilters reads the path-exclude and path-include options of the
// base's dpkg configuration, in the order dpkg reads them: the files of
// /etc/dpkg/dpkg.cfg.d by name, then /etc/dpkg/dpkg.cfg (docs/cir.md,
// "Unpacking"). A CIR without apt packages unpacks none: nothing is read.
// A missing folder or file has no filters, as for dpkg; a filter dpkg would
// stop on is an error naming the file and line.
func readDpkgFilters(ctx context.Context, base client.Reference, rec *cir.Record) (cir.DpkgFilters, error) {
	if len(rec.Dependencies.Apt) == 0 {
		return nil, nil
	}
	var files []string
	entries, err := base.ReadDir(ctx, client.ReadDirRequest{Path: cir.DpkgConfigDir})
	if err != nil && !notExist(err) {
		return nil, rpcError("read the base's %s: %v", cir.DpkgConfigDir, err)
	}
	if err == nil {
		var names []string
		for _, e := range entries {
			// dpkg would fail reading a folder; a symlink it follows.
			if !os.FileMode(e.Mode).IsDir() {
				names = append(names, path.Base(e.Path))
			}
		}
		if len(names) > maxDpkgConfigFiles {
			return nil, fmt.Errorf("the base's %s holds %d files, more than the %d a deploy reads", cir.DpkgConfigDir, len(names), maxDpkgConfigFiles)
		}
		for _, n := range cir.DpkgConfigOrder(names) {
			files = append(files, path.Join(cir.DpkgConfigDir, n))
		}
	}
	files = append(files, cir.DpkgConfigFile)
	var filters cir.DpkgFilters
	for _, f := range files {
		dt, err := readBounded(ctx, base, f, maxDpkgConfig+1)
		if notExist(err) {
			// dpkg skips a file it cannot open (a dangling symlink
			// too), with a warning.
			continue
		}
		if err != nil {
			return nil, rpcError("read the base's %s: %v", f, err)
		}
		if len(dt) > maxDpkgConfig {
			return nil, fmt.Errorf("the base's %s is over %d MiB, more than a deploy reads of a dpkg configuration file", f, maxDpkgConfig>>20)
		}
		fs, err := cir.ParseDpkgConfig("the base's "+f, dt)
		if err != nil {
			return nil, err
		}
		filters = append(filters, fs...)
	}
	return filters, nil
}

// notExist says whether a read of the base failed for a missing path: the
// error comes over gRPC as text.
func notExist(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such file or directory")
}
