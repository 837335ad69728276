package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
)

const ociLayoutScheme = "oci-layout://"

// ociLayoutStores attaches the OCI layouts that named contexts name
// (oci-layout://PATH[:TAG][@DIGEST]) to the session as content stores, as
// docker buildx does, and rewrites each context to name its store: the
// frontend reads a layout through the session, never from the client's
// disk. A store's name is a hash of the layout's absolute path, so the
// same flags make the same frontend options.
func ociLayoutStores(attrs map[string]string) (map[string]content.Store, error) {
	stores := map[string]content.Store{}
	for k, v := range attrs {
		name, ok := strings.CutPrefix(k, "context:")
		if !ok || !strings.HasPrefix(v, ociLayoutScheme) {
			continue
		}
		ref := strings.TrimPrefix(v, ociLayoutScheme)
		path, dgst, _ := strings.Cut(ref, "@")
		tag := ""
		// A tag follows the last ":" after the last "/" (a path may hold
		// colons in its folders).
		if i := strings.LastIndex(path, ":"); i > strings.LastIndex(path, "/") {
			path, tag = path[:i], path[i+1:]
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("--build-context %s=%s: %w", name, v, err)
		}
		if _, err := os.Stat(filepath.Join(abs, "index.json")); err != nil {
			return nil, fmt.Errorf("--build-context %s=%s: %s is not an OCI layout (no index.json)", name, v, abs)
		}
		store, err := local.NewStore(abs)
		if err != nil {
			return nil, fmt.Errorf("--build-context %s=%s: %w", name, v, err)
		}
		sum := sha256.Sum256([]byte(abs))
		id := "2dfs-" + hex.EncodeToString(sum[:8])
		stores[id] = store
		v = ociLayoutScheme + id
		if tag != "" {
			v += ":" + tag
		}
		if dgst != "" {
			v += "@" + dgst
		}
		attrs[k] = v
	}
	return stores, nil
}
