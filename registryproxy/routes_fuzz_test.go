package registryproxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/field"
)

// apiPathRE is the fuzz test's own statement of what may reach an
// upstream, written apart from the router: the distribution API paths,
// with names in the distribution grammar.
var apiPathRE = regexp.MustCompile(`^/v2/(?:|_catalog|` +
	`([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)` +
	`/(?:manifests/([^/]+)|blobs/([^/]+)|blobs/uploads/?([^/]*)|tags/list|referrers/([^/]+)))$`)

// fuzzUpstream is an upstream that records, as a violation, any request
// the proxy should not have sent it.
type fuzzUpstream struct {
	name      string
	srv       *httptest.Server
	forbidden bool // not configured: nothing may reach it

	mu         sync.Mutex
	hits       int
	violations []string
}

func (u *fuzzUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hits++
	bad := func(format string, args ...any) {
		u.violations = append(u.violations, fmt.Sprintf("%s got %s %q: ", u.name, r.Method, r.RequestURI)+fmt.Sprintf(format, args...))
	}
	switch m := apiPathRE.FindStringSubmatch(r.URL.Path); {
	case u.forbidden:
		bad("an upstream the proxy is not configured with")
	case r.URL.RawPath != "":
		bad("not the canonical (decoded) path")
	case m == nil:
		bad("not a registry API path")
	case len(m[1]) > 255:
		bad("name over 255 characters")
	default:
		for _, seg := range m[2:] {
			if seg == "." || seg == ".." {
				bad("dot segment")
			}
		}
		if m[2] != "" && field.IsPartitionTag(m[2]) {
			bad("a partition tag went upstream")
		}
	}
	writeError(w, http.StatusNotFound, codeManifestUnknown, "fuzz upstream has nothing")
}

func (u *fuzzUpstream) take() (int, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h, v := u.hits, u.violations
	u.hits, u.violations = 0, nil
	return h, v
}

// FuzzRouter sends arbitrary requests (method, request target with query,
// headers) to a proxy with a default upstream and one mirror. Nothing may
// panic; an upstream may only get canonical distribution API paths, and
// only the one the request's ?ns= names; a registry the proxy is not
// configured with gets nothing.
func FuzzRouter(f *testing.F) {
	def := &fuzzUpstream{name: "default"}
	mirror := &fuzzUpstream{name: "mirror"}
	forbidden := &fuzzUpstream{name: "forbidden", forbidden: true}
	for _, u := range []*fuzzUpstream{def, mirror, forbidden} {
		u.srv = httptest.NewServer(u)
		f.Cleanup(u.srv.Close)
	}
	defHost := strings.TrimPrefix(def.srv.URL, "http://")
	forbiddenHost := strings.TrimPrefix(forbidden.srv.URL, "http://")
	p, err := New(Options{
		Upstream:     mustURL(def.srv.URL),
		Mirrors:      map[string]*url.URL{"mirror.example": mustURL(mirror.srv.URL)},
		BuildTimeout: 5 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}

	for _, s := range [][3]string{
		{"GET", "/v2/", ""},
		{"GET", "/v2/app/manifests/v1", "Accept: application/vnd.oci.image.manifest.v1+json"},
		{"HEAD", "/v2/app/manifests/v1--0.0.1.1?ns=mirror.example", "Authorization: Basic dXNlcjpwYXNz"},
		{"GET", "/v2/app/manifests/sha256:" + strings.Repeat("a", 64), ""},
		{"GET", "/v2/library%2Fapp/blobs/sha256:" + strings.Repeat("b", 64) + "?ns=" + defHost, ""},
		{"POST", "/v2/app/blobs/uploads/?ns=mirror.example", "Content-Length: 0"},
		{"PATCH", "/v2/app/blobs/uploads/abc-123?_state=x", ""},
		{"GET", "/v2/../admin/users", ""},
		{"GET", "/v2/%2e%2e/admin", ""},
		{"GET", "/v2//app/manifests/v1", ""},
		{"GET", "/v2/app%2F..%2F..%2Fadmin/manifests/v1", ""},
		{"GET", "/v2/app/manifests/v1?ns=" + forbiddenHost, "Host: " + forbiddenHost},
		{"GET", "http://" + forbiddenHost + "/v2/app/manifests/v1", ""},
		{"GET", "/v2/app/tags/list?n=10&last=a", ""},
		{"GET", "/v2/_catalog", ""},
		{"DELETE", "/v2/app/manifests/v1--a.b.c.d", ""},
		{"GET", "/v2/app/referrers/sha256:" + strings.Repeat("c", 64) + "?artifactType=x", ""},
		{"GET", "/metrics", ""},
		{"GET", "/v2/app/manifests/v1----0.0.0.0", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, method, target, headers string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: proxy.example\r\n" + headers + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the server would not get this far either
		}
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)

		want := (*fuzzUpstream)(nil) // the upstream the request may reach
		switch ns := req.URL.Query().Get("ns"); ns {
		case "", defHost:
			want = def
		case "mirror.example":
			want = mirror
		}
		for _, u := range []*fuzzUpstream{def, mirror, forbidden} {
			hits, violations := u.take()
			if len(violations) > 0 {
				t.Fatalf("%q: %s", raw, strings.Join(violations, "; "))
			}
			if hits > 0 && u != want {
				t.Fatalf("%q reached the %s upstream", raw, u.name)
			}
		}
	})
}
