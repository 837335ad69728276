package registryproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// rawRequest sends method and target exactly as written (no client-side
// cleaning or escaping) to the server at base and returns the response.
func rawRequest(t *testing.T, base, method, target string) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, method+" "+target+" HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

// requestLog records the raw request URI of every request an upstream gets.
type requestLog struct {
	mu   sync.Mutex
	uris []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.uris = append(l.uris, r.Method+" "+r.RequestURI)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.uris
	l.uris = nil
	return u
}

// TestOnlyAPIPathsUpstream: paths that are not well-formed distribution API
// paths (dot segments, plain or encoded, double slashes, bad names) are
// answered 404 by the proxy and never reach the upstream; what does reach
// it is the canonical, decoded form the proxy checked.
func TestOnlyAPIPathsUpstream(t *testing.T) {
	var log requestLog
	e := newEnv(t, log.wrap)
	push(t, e.registry.URL, "library/app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	log.take()

	long := strings.Repeat("a", 256)
	for _, target := range []string{
		"/v2/../admin/users",
		"/v2/%2e%2e/admin/users",
		"/v2/%2E%2E/%2e%2e/admin",
		"/v2/library/../../admin/manifests/v1",
		"/v2/./library/app/manifests/v1",
		"/v2//library/app/manifests/v1",
		"/v2/library//app/manifests/v1",
		"/v2/library/app/manifests//v1",
		"/v2/library%2F..%2F..%2Fadmin/manifests/v1",
		"/v2/library/app/manifests/v1%2F..%2F..%2Fadmin",
		"/v2/library/app/manifests/..",
		"/v2/library/app/manifests/",
		"/v2/library/app/blobs/",
		"/v2/Library/app/manifests/v1",
		"/v2/" + long + "/manifests/v1",
		"/v2/admin/users",
		"/v2/library/app/tags/all",
		"/v2/_catalog/../admin",
		"/v2/library/app/blobs/uploads/..",
		"/v2/%00/manifests/v1",
		"/admin",
	} {
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			r := rawRequest(t, e.proxy.URL, method, target)
			if r.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: %s %s, want 404", method, target, r.Status, r.body)
			} else if r.Header.Get("Content-Type") != "application/json" || strings.HasPrefix(r.ociError(), "(not") {
				t.Errorf("%s %s: not a registry error: %s", method, target, r.body)
			}
			if got := log.take(); len(got) != 0 {
				t.Errorf("%s %s reached the upstream: %v", method, target, got)
			}
		}
	}

	// Well-formed paths go upstream, decoded: an encoded "/" reaches it
	// as the "/" the proxy checked the name with.
	for _, c := range []struct{ target, upstream string }{
		{"/v2/library/app/manifests/v1", "/v2/library/app/manifests/v1"},
		{"/v2/library%2Fapp/manifests/v1", "/v2/library/app/manifests/v1"},
		{"/v2/library/%61pp/manifests/v1", "/v2/library/app/manifests/v1"},
		{"/v2/", "/v2/"},
		{"/v2", "/v2/"},
		{"/v2/_catalog?n=10", "/v2/_catalog?n=10"},
		{"/v2/library/app/tags/list", "/v2/library/app/tags/list"},
		{"/v2/" + long[:255] + "/manifests/v1", "/v2/" + long[:255] + "/manifests/v1"},
	} {
		r := rawRequest(t, e.proxy.URL, http.MethodGet, c.target)
		got := log.take()
		if len(got) != 1 || got[0] != "GET "+c.upstream {
			t.Errorf("GET %s: upstream got %v, want GET %s (%s)", c.target, got, c.upstream, r.Status)
		}
	}
	if r := rawRequest(t, e.proxy.URL, http.MethodGet, "/v2/library%2Fapp/manifests/v1"); r.StatusCode != http.StatusOK {
		t.Errorf("encoded slash: %s", r.Status)
	}
	log.take()

	// A malformed tag or digest in an API path is 400, as registries
	// answer it (the conformance suite checks), and not forwarded either.
	for target, code := range map[string]string{
		"/v2/library/app/manifests/v1;x=y":                      "TAG_INVALID",
		"/v2/library/app/manifests/sha256:baddigeststring":      "DIGEST_INVALID",
		"/v2/library/app/blobs/not-a-digest":                    "DIGEST_INVALID",
		"/v2/library/app/referrers/sha256:" + long[:10]:         "DIGEST_INVALID",
		"/v2/library/app/manifests/" + strings.Repeat("t", 129): "TAG_INVALID",
	} {
		r := rawRequest(t, e.proxy.URL, http.MethodPut, target)
		if r.StatusCode != http.StatusBadRequest || !strings.HasPrefix(r.ociError(), code) {
			t.Errorf("PUT %s: %s %s, want 400 %s", target, r.Status, r.ociError(), code)
		}
		if got := log.take(); len(got) != 0 {
			t.Errorf("PUT %s reached the upstream: %v", target, got)
		}
	}

	// Methods a route does not have are refused here too.
	if r := rawRequest(t, e.proxy.URL, http.MethodPost, "/v2/library/app/manifests/v1"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST manifest: %s", r.Status)
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("POST manifest reached the upstream: %v", got)
	}
}

// TestAmbiguousPartitionTag: a base tag ending in "-" right before the
// selection is refused as ambiguous, without an upstream request.
func TestAmbiguousPartitionTag(t *testing.T) {
	var log requestLog
	e := newEnv(t, log.wrap)
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	log.take()
	for _, tag := range []string{"v1----0.0.0.0", "v1---0.0.0.0"} {
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/"+tag, nil)
		if r.StatusCode != http.StatusBadRequest || !strings.HasPrefix(r.ociError(), "TAG_INVALID") || !strings.Contains(r.ociError(), "ambiguous") {
			t.Errorf("%s: %s %s, want 400 TAG_INVALID ambiguous", tag, r.Status, r.ociError())
		}
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("ambiguous tags reached the upstream: %v", got)
	}
}
