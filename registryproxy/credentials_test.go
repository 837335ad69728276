package registryproxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

func TestParseChallenge(t *testing.T) {
	scheme, params := parseChallenge(`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push", error="x\"y"`)
	want := map[string]string{"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push", "error": `x"y`}
	if scheme != "bearer" || !reflect.DeepEqual(params, want) {
		t.Errorf("got %q %v", scheme, params)
	}
	if scheme, params := parseChallenge(`Basic realm=registry`); scheme != "basic" || params["realm"] != "registry" {
		t.Errorf("got %q %v", scheme, params)
	}
	if repositoryOf("/v2/a/b/manifests/v1") != "a/b" || repositoryOf("/v2/") != "" || repositoryOf("/v2/x/tags/list") != "x" {
		t.Error("repositoryOf")
	}
}

func withCredentials() func(*Options) {
	return func(o *Options) {
		o.Credentials = map[string]BasicAuth{o.Upstream.Host: {Username: "user", Password: "pass"}}
	}
}

func TestUpstreamCredentialsBasic(t *testing.T) {
	e := newEnv(t, basicAuth, withCredentials())
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "private", "v1", img)

	r := do(t, http.MethodGet, e.proxy.URL+"/v2/private/manifests/v1--0.0.1.1", nil)
	d := checkServed(t, r, ocispec.MediaTypeImageManifest)
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/private/manifests/"+d.String(), nil); r.StatusCode != http.StatusOK {
		t.Errorf("by digest: %s", r.Status)
	}
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/private/manifests/v1", nil); r.StatusCode != http.StatusOK {
		t.Errorf("pass-through: %s", r.Status)
	}
	// A client's own Authorization is never replaced.
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/private/manifests/v1", nil, "Authorization", "Basic dXNlcjp3cm9uZw=="); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("client credentials replaced: %s", r.Status)
	}
}

func TestUpstreamCredentialsToken(t *testing.T) {
	var tokenRequests atomic.Int32
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "tok:" + r.URL.Query().Get("scope"), "expires_in": 300})
	}))
	defer tokens.Close()
	bearer := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			repo := repositoryOf(r.URL.Path)
			if r.Header.Get("Authorization") != "Bearer tok:repository:"+repo+":pull" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+tokens.URL+`/token",service="test",scope="repository:`+repo+`:pull"`)
				writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "token required")
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, bearer, withCredentials())
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "team/model", "v1", img)

	for range 3 {
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/team/model/manifests/v1--0.0.1.1", nil)
		checkServed(t, r, ocispec.MediaTypeImageManifest)
	}
	layer := do(t, http.MethodGet, e.proxy.URL+"/v2/team/model/blobs/"+digest.FromBytes(img.Layers[0]).String(), nil)
	if layer.StatusCode != http.StatusOK {
		t.Errorf("layer pass-through: %s", layer.Status)
	}
	if n := tokenRequests.Load(); n != 1 {
		t.Errorf("%d token requests, want 1 (cached per repository)", n)
	}
	if strings.Contains(e.logs.String(), "tok:") {
		t.Error("token logged")
	}
}
