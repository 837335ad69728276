package registryproxy

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/redis/go-redis/v9"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// TestStoredObjectsBoundToSource: a stored partition is served by digest
// only through the upstream and repository it was built from. Two mirrors
// hold the same source image, one private: what a credentialed client
// built through the private one is not served to an anonymous client
// through the public one (nor through another repository), although the
// public one would pass the access check of the source.
func TestStoredObjectsBoundToSource(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Minute} {
		newReg := func(wrap func(http.Handler) http.Handler) (direct, front *httptest.Server) {
			reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
			direct, front = httptest.NewServer(reg), httptest.NewServer(wrap(reg))
			t.Cleanup(direct.Close)
			t.Cleanup(front.Close)
			return direct, front
		}
		pubDirect, pub := newReg(func(h http.Handler) http.Handler { return h })
		privDirect, priv := newReg(basicAuth)
		img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
		push(t, pubDirect.URL, "app", "v1", img)
		push(t, privDirect.URL, "app", "v1", img)
		push(t, privDirect.URL, "other", "v1", img)
		mem := NewMemoryStore(1 << 20)
		p, err := New(Options{
			Mirrors:        map[string]*url.URL{"pub.example": mustURL(pub.URL), "priv.example": mustURL(priv.URL)},
			Store:          mem,
			AccessCacheTTL: ttl,
			Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		good := []string{"Authorization", "Basic dXNlcjpwYXNz"}

		r := do(t, http.MethodGet, srv.URL+"/v2/app/manifests/v1--0.0.1.1?ns=priv.example", nil, good...)
		d := checkServed(t, r, ocispec.MediaTypeImageManifest)
		byDigest := func(repo, ns string, hdr ...string) int {
			return do(t, http.MethodGet, srv.URL+"/v2/"+repo+"/manifests/"+d.String()+"?ns="+ns, nil, hdr...).StatusCode
		}
		if got := byDigest("app", "priv.example", good...); got != http.StatusOK {
			t.Fatalf("ttl %v: by digest where it was built: %d", ttl, got)
		}
		if got := byDigest("app", "pub.example"); got != http.StatusNotFound {
			t.Errorf("ttl %v: partition built through priv.example served through pub.example: %d", ttl, got)
		}
		if got := byDigest("other", "priv.example", good...); got != http.StatusNotFound {
			t.Errorf("ttl %v: partition built from app served from other: %d", ttl, got)
		}
		// Built through both, it is served through both.
		checkServed(t, do(t, http.MethodGet, srv.URL+"/v2/app/manifests/v1--0.0.1.1?ns=pub.example", nil), ocispec.MediaTypeImageManifest)
		if a, b := byDigest("app", "pub.example"), byDigest("app", "priv.example", good...); a != http.StatusOK || b != http.StatusOK {
			t.Errorf("ttl %v: built through both mirrors: pub %d, priv %d", ttl, a, b)
		}
		if got := byDigest("app", "priv.example"); got != http.StatusUnauthorized {
			t.Errorf("ttl %v: anonymous through priv.example: %d", ttl, got)
		}

		// An object stored without a binding (before the change) is a miss.
		legacy := &Object{Digest: digest.FromString("legacy"), MediaType: ocispec.MediaTypeImageManifest, Data: []byte("legacy"), Source: img.Digest(), Manifest: true}
		if err := mem.Put(context.Background(), legacy); err != nil {
			t.Fatal(err)
		}
		if got := do(t, http.MethodGet, srv.URL+"/v2/app/manifests/"+legacy.Digest.String()+"?ns=pub.example", nil).StatusCode; got != http.StatusNotFound {
			t.Errorf("ttl %v: unbound object: %d", ttl, got)
		}
	}
}

// TestStoresKeepScopes: every store keeps the scopes of an object and
// merges those of an identical object built elsewhere; a tiered store
// whose fast tier is stale finds the scope in the shared one.
func TestStoresKeepScopes(t *testing.T) {
	ctx := context.Background()
	dir, err := NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: startRedis(t)})
	defer client.Close()
	rs := NewRedisStore(client, RedisOptions{Prefix: "scopes:"})
	for name, s := range map[string]Store{"memory": NewMemoryStore(1 << 20), "dir": dir, "redis": rs} {
		a, b := obj("same bytes"), obj("same bytes")
		a.Scopes, b.Scopes = []string{Scope("http://a", "app")}, []string{Scope("http://b", "app")}
		for _, o := range []*Object{a, b} {
			if err := s.Put(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		for _, sc := range []string{Scope("http://a", "app"), Scope("http://b", "app")} {
			if _, err := getBound(ctx, s, a.Digest, sc); err != nil {
				t.Errorf("%s: scope %q: %v", name, sc, err)
			}
		}
		if _, err := getBound(ctx, s, a.Digest, Scope("http://a", "other")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: another repository: %v", name, err)
		}
	}

	// Replica 1's memory holds the object bound to a; replica 2 then built
	// it from b into Redis.
	mem := NewMemoryStore(1 << 20)
	tiered := TieredStore{mem, NewRedisStore(client, RedisOptions{Prefix: "tiered:"})}
	a, b := obj("tiered"), obj("tiered")
	a.Scopes, b.Scopes = []string{Scope("http://a", "app")}, []string{Scope("http://b", "app")}
	if err := tiered.Put(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := NewRedisStore(client, RedisOptions{Prefix: "tiered:"}).Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := getBound(ctx, tiered, a.Digest, Scope("http://b", "app")); err != nil {
		t.Errorf("tiered: scope only in the shared tier: %v", err)
	}
	if o, err := mem.Get(ctx, a.Digest); err != nil || len(o.Scopes) != 2 {
		t.Errorf("tiered: memory tier not filled with both scopes: %+v %v", o, err)
	}
}
