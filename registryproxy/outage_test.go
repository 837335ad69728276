package registryproxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// TestRelayed5xxIsNoOutage: a client cannot switch off the access cache by
// provoking a 5xx on a pass-through request (here the registry answers 500
// for one repository): only the proxy's own checks and builds, or an
// unreachable registry, count as an outage.
func TestRelayed5xxIsNoOutage(t *testing.T) {
	var log upstreamLog
	e := newEnv(t, func(h http.Handler) http.Handler {
		return log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v2/broken/") {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		}))
	}, func(o *Options) { o.AccessCacheTTL = time.Minute })
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	d := do(t, http.MethodHead, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil).Header.Get("Docker-Content-Digest")
	byDigest := e.proxy.URL + "/v2/app/manifests/" + d

	for range 3 {
		if r := do(t, http.MethodGet, e.proxy.URL+"/v2/broken/manifests/v1", nil); r.StatusCode != http.StatusInternalServerError {
			t.Fatalf("broken repository: %s, want the registry's 500 relayed", r.Status)
		}
	}
	log.take()
	for range 3 {
		if r := do(t, http.MethodGet, byDigest, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("by digest: %s", r.Status)
		}
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("a relayed 500 suspended the access cache: upstream %v", got)
	}

	// The proxy's own build failing on a 5xx does count.
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/broken/manifests/v1--0.0.1.1", nil); r.StatusCode != http.StatusBadGateway {
		t.Fatalf("partition of the broken repository: %s", r.Status)
	}
	log.take()
	do(t, http.MethodGet, byDigest, nil)
	if got := log.take(); len(got) != 1 || !strings.HasPrefix(got[0], "HEAD ") {
		t.Errorf("after a failed build: upstream %v, want the access check made again", got)
	}
}
