package registryproxy

import (
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// An index may list one manifest many times (up to MaxIndexManifests):
// each distinct manifest and config is read from the upstream once.
func TestPartitionIndexIdenticalChildren(t *testing.T) {
	var gets atomic.Int64
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/m/") {
				gets.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "m", img.Digest().String(), img)
	p := partitiontest.Platform{Image: img, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	platforms := make([]partitiontest.Platform, partition.MaxIndexManifests)
	for i := range platforms {
		platforms[i] = p
	}
	index, _ := partitiontest.Index(ocispec.MediaTypeImageIndex, platforms...)
	pushManifest(t, e.registry.URL, "m", "v1", ocispec.MediaTypeImageIndex, index)

	r := do(t, http.MethodGet, e.proxy.URL+"/v2/m/manifests/v1--0.0.0.0", nil, "Accept", ocispec.MediaTypeImageIndex)
	checkServed(t, r, ocispec.MediaTypeImageIndex)
	// The index, the one manifest, its config.
	if n := gets.Load(); n != 3 {
		t.Errorf("%d upstream GETs for an index of %d identical entries, want 3", n, partition.MaxIndexManifests)
	}
}

// An upstream refusal deep in a partition is reported with each context
// once: which index entry, which blob, what the upstream said.
func TestPartitionErrorContext(t *testing.T) {
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") {
				w.Header().Set("WWW-Authenticate", `Bearer realm="x"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "m", img.Digest().String(), img)
	index, _ := partitiontest.Index(ocispec.MediaTypeImageIndex,
		partitiontest.Platform{Image: img, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	pushManifest(t, e.registry.URL, "m", "v1", ocispec.MediaTypeImageIndex, index)

	r := do(t, http.MethodGet, e.proxy.URL+"/v2/m/manifests/v1--0.0.0.0", nil)
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %s, want the upstream's 401", r.Status)
	}
	m := regexp.MustCompile(`msg="partition failed".* err="([^"]*)"`).FindStringSubmatch(e.logs.String())
	if m == nil {
		t.Fatalf("no partition failure logged:\n%s", e.logs.String())
	}
	want := "index manifests[0] (" + img.Digest().String() + "): config: upstream answered 401 Unauthorized"
	if m[1] != want {
		t.Errorf("logged error\n%s\nwant\n%s", m[1], want)
	}
}
