package direct

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// racyWindow is how close to the scan a source may have changed and still
// be trusted from the stat cache. A file written in the same timestamp tick
// as the scan, after its read, keeps the stat the scan saw (git's "racily
// clean" case); Linux file times move in clock ticks of a few milliseconds,
// so sources that changed this close to the scan are re-read next time.
const racyWindow = 100 * time.Millisecond

// statCache maps an allotment's inputs (its tree's fingerprint and the
// build's settings) to the layer they gave, so a re-run with unchanged
// sources reads no file bytes. One small file per entry: concurrent builds
// never share a write.
type statCache struct{ dir string }

type cachedLayer struct {
	Digest    digest.Digest `json:"digest"`
	DiffID    digest.Digest `json:"diffID"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
	// Repos are repositories the blob was pushed to, for cross-repository
	// mounts.
	Repos []string `json:"repos,omitempty"`
}

// defaultCacheDir is where the stat cache lives: $XDG_CACHE_HOME/2dfs/direct.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "2dfs", "direct")
}

func (c statCache) path(key digest.Digest) string {
	return filepath.Join(c.dir, key.Encoded())
}

func (c statCache) get(key digest.Digest) (cachedLayer, bool) {
	if c.dir == "" {
		return cachedLayer{}, false
	}
	dt, err := os.ReadFile(c.path(key))
	if err != nil {
		return cachedLayer{}, false
	}
	var l cachedLayer
	if json.Unmarshal(dt, &l) != nil || l.Digest.Validate() != nil || l.DiffID.Validate() != nil {
		return cachedLayer{}, false
	}
	return l, true
}

// put records a layer unless its newest source changed within racyWindow of
// scanStart. Failing to write the cache only costs a re-read next time.
func (c statCache) put(key digest.Digest, l cachedLayer, newest, scanStart time.Time) {
	if c.dir == "" || !newest.Before(scanStart.Add(-racyWindow)) {
		return
	}
	if old, ok := c.get(key); ok && old.Digest == l.Digest {
		for _, r := range old.Repos {
			if !slices.Contains(l.Repos, r) {
				l.Repos = append(l.Repos, r)
			}
		}
	}
	dt, err := json.Marshal(l)
	if err != nil {
		return
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return
	}
	tmp, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(dt)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), c.path(key)) != nil {
		os.Remove(tmp.Name())
	}
}
