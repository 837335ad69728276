package registryproxy

import (
	"net/http"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// TestTagFreshness: within TagFreshness of a successful HEAD, the same
// caller's repeated tag is served without asking upstream; another caller
// is still checked, an upstream failure suspends the window, and after the
// window the HEAD comes back.
func TestTagFreshness(t *testing.T) {
	var log upstreamLog
	const window = 300 * time.Millisecond
	e := newEnv(t, func(h http.Handler) http.Handler { return log.wrap(basicAuth(h)) },
		func(o *Options) { o.TagFreshness = window })
	good := []string{"Authorization", "Basic dXNlcjpwYXNz", "Accept", ocispec.MediaTypeImageManifest}
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)
	tag := e.proxy.URL + "/v2/app/manifests/v1--0.0.1.1"

	d := checkServed(t, do(t, http.MethodGet, tag, nil, good...), ocispec.MediaTypeImageManifest)
	log.take()
	// The first repeat checks upstream and starts the window.
	start := time.Now()
	checkServed(t, do(t, http.MethodGet, tag, nil, good...), ocispec.MediaTypeImageManifest)
	if got := log.take(); len(got) != 1 || got[0] != "HEAD /v2/app/manifests/v1" {
		t.Fatalf("first repeat: upstream %v, want one HEAD", got)
	}
	for i := range 3 {
		if got := checkServed(t, do(t, http.MethodGet, tag, nil, good...), ocispec.MediaTypeImageManifest); got != d {
			t.Fatalf("repeat %d served %s, want %s", i, got, d)
		}
	}
	if got := log.take(); len(got) != 0 && time.Since(start) < window {
		t.Errorf("repeats within the window: upstream %v, want none", got)
	}
	// Another caller is not covered by the first one's window.
	if r := do(t, http.MethodGet, tag, nil, "Authorization", "Basic dXNlcjp3cm9uZw==", "Accept", ocispec.MediaTypeImageManifest); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("another caller within the window: %s, want the upstream's 401", r.Status)
	}
	// After an upstream failure the window is not used: an outage is
	// answered as one.
	log.take()
	checkServed(t, do(t, http.MethodGet, tag, nil, good...), ocispec.MediaTypeImageManifest)
	log.take()
	e.p.def.failed()
	checkServed(t, do(t, http.MethodGet, tag, nil, good...), ocispec.MediaTypeImageManifest)
	if got := log.take(); len(got) != 1 || got[0] != "HEAD /v2/app/manifests/v1" {
		t.Errorf("right after an upstream failure: upstream %v, want one HEAD", got)
	}
	e.p.def.all.Store(0)

	log.take()
	time.Sleep(window)
	checkServed(t, do(t, http.MethodGet, tag, nil, good...), ocispec.MediaTypeImageManifest)
	if got := log.take(); len(got) != 1 || got[0] != "HEAD /v2/app/manifests/v1" {
		t.Errorf("after the window: upstream %v, want one HEAD", got)
	}
}
