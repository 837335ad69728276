// Package direct builds a field whose sources are local files and folders
// without BuildKit: each allotment's layer in one streaming pass
// (package layer), the image config as the frontend writes it (package
// llb), and the manifest as BuildKit's image exporter writes it, so the
// image is the BuildKit path's, digest for digest.
package direct

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// Plan resolves the descriptor's allotments against the context folder
// root, as the frontend resolves them against the transferred context.
// Special files inside source folders are found by layer.Scan.
func Plan(desc *descriptor.Descriptor, root string) ([]descriptor.PlannedAllotment, error) {
	return desc.Plan(func(src string) (fs.FileMode, error) {
		st, err := os.Stat(filepath.Join(root, filepath.FromSlash(src)))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return 0, fmt.Errorf("%s: %w", src, fs.ErrNotExist)
			}
			return 0, err
		}
		return st.Mode(), nil
	})
}
