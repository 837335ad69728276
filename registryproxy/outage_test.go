package registryproxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// TestRelayed5xxIsNoOutage: a client cannot switch off the access cache by
// provoking a 5xx on a pass-through request (here the registry answers 500
// for one repository): only the proxy's own checks and builds, or an
// unreachable registry, count as an outage (TestRepository5xxIsNoOutage).
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

}

// TestRepository5xxIsNoOutage: a partition build that fails because the
// registry answers 500 for one repository suspends cached access checks of
// that repository only; an unreachable registry suspends them all.
func TestRepository5xxIsNoOutage(t *testing.T) {
	var log upstreamLog
	var badDown atomic.Bool
	e := newEnv(t, func(h http.Handler) http.Handler {
		return log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if badDown.Load() && strings.HasPrefix(r.URL.Path, "/v2/bad/") {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		}))
	}, func(o *Options) { o.AccessCacheTTL = time.Minute })
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "good", "v1", img)
	push(t, e.registry.URL, "bad", "v1", img)
	byDigest := map[string]string{}
	for _, repo := range []string{"good", "bad"} {
		d := do(t, http.MethodHead, e.proxy.URL+"/v2/"+repo+"/manifests/v1--0.0.1.1", nil).Header.Get("Docker-Content-Digest")
		byDigest[repo] = e.proxy.URL + "/v2/" + repo + "/manifests/" + d
		if r := do(t, http.MethodGet, byDigest[repo], nil); r.StatusCode != http.StatusOK {
			t.Fatalf("%s by digest: %s", repo, r.Status)
		}
	}

	badDown.Store(true)
	for range 3 {
		if r := do(t, http.MethodGet, e.proxy.URL+"/v2/bad/manifests/v1--0.0.0.0", nil); r.StatusCode != http.StatusBadGateway {
			t.Fatalf("partition of the failing repository: %s, want 502", r.Status)
		}
	}
	log.take()
	for range 3 {
		if r := do(t, http.MethodGet, byDigest["good"], nil); r.StatusCode != http.StatusOK {
			t.Fatalf("good by digest: %s", r.Status)
		}
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("a 500 for repository bad suspended the access cache of good: upstream %v", got)
	}
	// The failing repository's own cached checks are not used: its
	// outage is answered as one.
	if r := do(t, http.MethodGet, byDigest["bad"], nil); r.StatusCode < 500 {
		t.Errorf("bad by digest while the registry fails it: %s, want a 5xx", r.Status)
	}
	if got := log.take(); len(got) != 1 || !strings.HasPrefix(got[0], "HEAD /v2/bad/") {
		t.Errorf("bad by digest: upstream %v, want the access check made again", got)
	}

	// An unreachable registry is an outage of every repository.
	e.upstream.Close()
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/good/manifests/v1--0.0.1.1", nil); r.StatusCode != http.StatusBadGateway {
		t.Fatalf("partition with the registry gone: %s", r.Status)
	}
	if r := do(t, http.MethodGet, byDigest["good"], nil); r.StatusCode != http.StatusBadGateway {
		t.Errorf("good by digest with the registry gone: %s, want 502", r.Status)
	}
}

// TestFailuresBounded: the repositories remembered as failing are bounded;
// expired ones make room, and more failing at once than the bound is an
// outage of the whole upstream.
func TestFailuresBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFailures(time.Minute)
	f.now = func() time.Time { return now }
	f.failedRepository("a")
	if !f.failedWithin("a", time.Minute) || f.failedWithin("b", time.Minute) {
		t.Fatal("a failure of repository a is not one of a alone")
	}
	now = now.Add(time.Minute)
	if f.failedWithin("a", time.Minute) {
		t.Error("a failure a window ago still counts")
	}
	for i := range maxFailedRepositories - 1 {
		f.failedRepository(fmt.Sprint("r", i))
	}
	// Full: the expired entry of a makes room.
	f.failedRepository("new")
	if len(f.repos) != maxFailedRepositories || f.failedWithin("b", time.Minute) {
		t.Fatalf("%d entries, whole upstream failed: %v", len(f.repos), f.failedWithin("b", time.Minute))
	}
	if _, ok := f.repos["a"]; ok {
		t.Error("the expired entry was kept")
	}
	f.failedRepository("r0") // known: no growth
	if f.failedWithin("b", time.Minute) {
		t.Error("a repeated failure of a known repository counted for every repository")
	}
	f.failedRepository("one-too-many")
	if len(f.repos) > maxFailedRepositories {
		t.Errorf("%d entries, over the bound", len(f.repos))
	}
	if !f.failedWithin("b", time.Minute) {
		t.Error("more failing repositories than the bound did not count as an outage of the whole upstream")
	}
}

// TestRelayedConnectionErrorIsNoOutage: a client's pass-through request
// that the registry resets or does not answer in time gets a 502 or 504,
// and does not suspend cached access checks: a client can provoke either
// for a repository of its choosing. Only a registry that cannot be dialled
// at all is an outage of every repository (TestRepository5xxIsNoOutage).
func TestRelayedConnectionErrorIsNoOutage(t *testing.T) {
	var log upstreamLog
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 300 * time.Millisecond
	e := newEnv(t, func(h http.Handler) http.Handler {
		return log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/v2/reset/"):
				c, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				c.(*net.TCPConn).SetLinger(0) // a reset, not an orderly close
				c.Close()
			case strings.HasPrefix(r.URL.Path, "/v2/slow/"):
				select {
				case <-stall:
				case <-r.Context().Done():
				}
			default:
				h.ServeHTTP(w, r)
			}
		}))
	}, func(o *Options) { o.AccessCacheTTL = time.Minute; o.Transport = tr })
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	d := do(t, http.MethodHead, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil).Header.Get("Docker-Content-Digest")
	byDigest := e.proxy.URL + "/v2/app/manifests/" + d
	if r := do(t, http.MethodGet, byDigest, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("by digest: %s", r.Status)
	}
	blob := "/blobs/sha256:" + strings.Repeat("0", 64)
	for _, c := range []struct {
		repo string
		want int
	}{{"reset", http.StatusBadGateway}, {"slow", http.StatusGatewayTimeout}} {
		if r := do(t, http.MethodGet, e.proxy.URL+"/v2/"+c.repo+blob, nil); r.StatusCode != c.want {
			t.Fatalf("%s blob: %s, want %d", c.repo, r.Status, c.want)
		}
		log.take()
		if r := do(t, http.MethodGet, byDigest, nil); r.StatusCode != http.StatusOK {
			t.Fatalf("by digest after the %s blob: %s", c.repo, r.Status)
		}
		if got := log.take(); len(got) != 0 {
			t.Errorf("a relayed %s suspended the access cache: upstream %v", c.repo, got)
		}
	}
	// A registry that cannot be dialled is down for every repository,
	// noticed by a pass-through request too.
	e.upstream.Close()
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/app"+blob, nil); r.StatusCode != http.StatusBadGateway {
		t.Fatalf("blob with the registry gone: %s, want 502", r.Status)
	}
	if r := do(t, http.MethodGet, byDigest, nil); r.StatusCode != http.StatusBadGateway {
		t.Errorf("by digest with the registry gone: %s, want 502 (the cached check not used)", r.Status)
	}
}
