package registryproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/redis/go-redis/v9"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// upstreamLog records the requests the proxy sends upstream.
type upstreamLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *upstreamLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// take returns the requests since the last call.
func (l *upstreamLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reqs
	l.reqs = nil
	return r
}

// TestRepeatedTagReused: a repeated partition tag costs one upstream HEAD
// of the base tag and no rebuild; a moved tag, a refused caller and a lost
// stored object are noticed.
func TestRepeatedTagReused(t *testing.T) {
	var log upstreamLog
	e := newEnv(t, func(h http.Handler) http.Handler { return log.wrap(basicAuth(h)) })
	good := []string{"Authorization", "Basic dXNlcjpwYXNz", "Accept", ocispec.MediaTypeImageManifest}
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)
	tag := e.proxy.URL + "/v2/app/manifests/v1--0.0.1.1"

	first := do(t, http.MethodGet, tag, nil, good...)
	d := checkServed(t, first, ocispec.MediaTypeImageManifest)
	if got := log.take(); len(got) < 2 {
		t.Fatalf("first request: upstream %v, want the manifest and config fetched", got)
	}
	for i := range 3 {
		r := do(t, http.MethodGet, tag, nil, good...)
		if checkServed(t, r, ocispec.MediaTypeImageManifest) != d || !bytes.Equal(r.body, first.body) {
			t.Fatalf("repeat %d served another manifest", i)
		}
		if got := log.take(); len(got) != 1 || got[0] != "HEAD /v2/app/manifests/v1" {
			t.Fatalf("repeat %d: upstream %v, want one HEAD of the base tag", i, got)
		}
	}
	// The stored config is still served (it was not rebuilt but is there).
	var m ocispec.Manifest
	_ = json.Unmarshal(first.body, &m)
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/blobs/"+m.Config.Digest.String(), nil, good...); r.StatusCode != http.StatusOK {
		t.Fatalf("config: %s", r.Status)
	}
	log.take()

	// Each caller is still checked upstream.
	for _, hdr := range [][]string{nil, {"Authorization", "Basic dXNlcjp3cm9uZw==", "Accept", ocispec.MediaTypeImageManifest}} {
		r := do(t, http.MethodGet, tag, nil, hdr...)
		if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" || r.Header.Get("Docker-Content-Digest") != "" {
			t.Errorf("reused partition for a caller without access: %s %v", r.Status, r.Header)
		}
	}

	// Another Accept is another choice of type: not the same entry.
	log.take()
	do(t, http.MethodGet, tag, nil, "Authorization", "Basic dXNlcjpwYXNz", "Accept", manifestAccept)
	if got := log.take(); len(got) < 2 {
		t.Errorf("another Accept reused the partition: upstream %v", got)
	}

	// The tag moves: the HEAD sees a new digest and the proxy rebuilds.
	img2 := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid...)
	push(t, e.registry.URL, "app", "v1", img2, "Authorization", "Basic dXNlcjpwYXNz")
	r := do(t, http.MethodGet, tag, nil, good...)
	want, err := partition.Image(img2.Manifest, img2.MediaType, img2.Config, sel(t, "0.0.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	if checkServed(t, r, ocispec.MediaTypeImageManifest) != want.ManifestDigest {
		t.Fatalf("moved tag: served %s, want the new image's partition %s", r.Header.Get("Docker-Content-Digest"), want.ManifestDigest)
	}

	// The store lost the partition (evicted, expired): rebuilt, not
	// served from the mapping.
	e.mem.mu.Lock()
	for k, el := range e.mem.items {
		e.mem.order.Remove(el)
		delete(e.mem.items, k)
	}
	e.mem.size = 0
	e.mem.mu.Unlock()
	log.take()
	r = do(t, http.MethodGet, tag, nil, good...)
	if checkServed(t, r, ocispec.MediaTypeImageManifest) != want.ManifestDigest {
		t.Fatal("after losing the store: another digest")
	}
	if got := log.take(); len(got) < 3 {
		t.Errorf("after losing the store: upstream %v, want a HEAD and a rebuild", got)
	}
	if _, err := e.mem.Get(t.Context(), want.ConfigDigest); err != nil {
		t.Errorf("rebuild did not store the config again: %v", err)
	}

	// Reuse disabled: every request rebuilds.
	e2 := newEnv(t, log.wrap, func(o *Options) { o.PartitionReuse = -1 })
	push(t, e2.registry.URL, "app", "v1", img)
	do(t, http.MethodGet, e2.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
	log.take()
	do(t, http.MethodGet, e2.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
	if got := log.take(); len(got) < 2 {
		t.Errorf("reuse disabled: upstream %v", got)
	}
}

// TestRepeatedIndexTagReused: for an index every platform's objects must be
// in the store for the reuse.
func TestRepeatedIndexTagReused(t *testing.T) {
	var log upstreamLog
	e := newEnv(t, log.wrap)
	amd := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	arm := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid...)
	push(t, e.registry.URL, "app", "amd", amd)
	push(t, e.registry.URL, "app", "arm", arm)
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"arm64","os":"linux"}}]}`,
		ocispec.MediaTypeImageIndex, amd.MediaType, digest.FromBytes(amd.Manifest), len(amd.Manifest), arm.MediaType, digest.FromBytes(arm.Manifest), len(arm.Manifest))
	pushManifest(t, e.registry.URL, "app", "v1", ocispec.MediaTypeImageIndex, []byte(idx))
	tag := e.proxy.URL + "/v2/app/manifests/v1--0.0.1.1"
	first := do(t, http.MethodGet, tag, nil)
	checkServed(t, first, ocispec.MediaTypeImageIndex)
	log.take()
	r := do(t, http.MethodGet, tag, nil)
	if !bytes.Equal(r.body, first.body) {
		t.Fatal("repeat served another index")
	}
	if got := log.take(); len(got) != 1 {
		t.Fatalf("repeat: upstream %v, want one HEAD", got)
	}
	// Every platform's manifest and config is served by digest.
	var ix ocispec.Index
	_ = json.Unmarshal(r.body, &ix)
	for _, c := range ix.Manifests {
		if r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/"+c.Digest.String(), nil); r.StatusCode != http.StatusOK {
			t.Errorf("platform manifest %s: %s", c.Digest, r.Status)
		}
	}
}

// TestAccessCache: by-digest requests for stored objects are checked
// upstream once per caller, repository and source within the TTL; refused
// checks are not cached; the cache keeps no credentials.
func TestAccessCache(t *testing.T) {
	var log upstreamLog
	e := newEnv(t, func(h http.Handler) http.Handler { return log.wrap(basicAuth(h)) }, func(o *Options) { o.AccessCacheTTL = time.Minute })
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img, "Authorization", "Basic dXNlcjpwYXNz")
	good := []string{"Authorization", "Basic dXNlcjpwYXNz"}
	bad := []string{"Authorization", "Basic dXNlcjp3cm9uZw=="}
	d := checkServed(t, do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil, good...), ocispec.MediaTypeImageManifest)
	byDigest := e.proxy.URL + "/v2/app/manifests/" + d.String()
	log.take()

	// The tag request checked access already: no upstream request.
	for range 5 {
		if r := do(t, http.MethodGet, byDigest, nil, good...); r.StatusCode != http.StatusOK {
			t.Fatalf("by digest: %s", r.Status)
		}
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("cached access: upstream %v", got)
	}
	// Another caller is checked, every time it is refused.
	for range 2 {
		if r := do(t, http.MethodGet, byDigest, nil, bad...); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("other credentials: %s", r.Status)
		}
	}
	if got := log.take(); len(got) != 2 {
		t.Errorf("refused caller: upstream %v, want 2 checks", got)
	}
	// Another repository is checked (and has no such source).
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/other/manifests/"+d.String(), nil, good...); r.StatusCode != http.StatusNotFound {
		t.Errorf("other repository: %s", r.Status)
	}
	// After the TTL the check is made again.
	e.p.access.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	log.take()
	do(t, http.MethodGet, byDigest, nil, good...)
	if got := log.take(); len(got) != 1 || !strings.HasPrefix(got[0], "HEAD ") {
		t.Errorf("expired: upstream %v, want one HEAD", got)
	}
	// Keys hold a hash of Authorization, never the credentials.
	e.p.access.mu.Lock()
	for k := range e.p.access.items {
		if strings.Contains(k, "dXNlcjpwYXNz") {
			t.Errorf("credentials in an access cache key")
		}
	}
	e.p.access.mu.Unlock()

	// TTL 0: every request is checked.
	e2 := newEnv(t, log.wrap)
	push(t, e2.registry.URL, "app", "v1", img)
	d2 := do(t, http.MethodHead, e2.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil).Header.Get("Docker-Content-Digest")
	log.take()
	for range 3 {
		do(t, http.MethodGet, e2.proxy.URL+"/v2/app/manifests/"+d2, nil)
	}
	if got := log.take(); len(got) != 3 {
		t.Errorf("no access cache: upstream %v, want 3 checks", got)
	}
}

func TestTTLCacheBounded(t *testing.T) {
	c := newTTLCache[int](time.Minute, 3)
	for i := range 10 {
		c.add(fmt.Sprint(i), i)
	}
	if c.len() != 3 {
		t.Errorf("len %d, want 3", c.len())
	}
	if _, ok := c.get("0"); ok {
		t.Error("oldest entry kept")
	}
	if v, ok := c.get("9"); !ok || v != 9 {
		t.Error("newest entry lost")
	}
}

// maxWriter records the largest single Write.
type maxWriter struct {
	*httptest.ResponseRecorder
	max int
}

func (m *maxWriter) Write(b []byte) (int, error) {
	m.max = max(m.max, len(b))
	return m.ResponseRecorder.Write(b)
}

// TestBlobCopyBuffer: blob pass-through copies in large chunks, not
// ReverseProxy's default 32 KiB (a read and a write syscall each).
func TestBlobCopyBuffer(t *testing.T) {
	e := newEnv(t, nil)
	blob := make([]byte, 4<<20)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)
	if r := do(t, http.MethodPost, e.registry.URL+"/v2/app/blobs/uploads/?digest="+d.String(), blob); r.StatusCode != http.StatusCreated {
		t.Fatal(r.Status)
	}
	w := &maxWriter{ResponseRecorder: httptest.NewRecorder()}
	e.p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v2/app/blobs/"+d.String(), nil))
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), blob) {
		t.Fatalf("blob: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w.max <= 32<<10 {
		t.Errorf("largest write %d bytes: the copy buffer is ReverseProxy's default", w.max)
	}
}

// TestReuseWithRedis: a repeated tag is reused only while Redis (shared by
// the replicas) holds the partition, and the reuse renews the entries' TTL.
func TestReuseWithRedis(t *testing.T) {
	addr := startRedis(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	var log upstreamLog
	mem := NewMemoryStore(1 << 20)
	e := newEnv(t, log.wrap, func(o *Options) {
		o.Store = TieredStore{mem, NewRedisStore(client, RedisOptions{Prefix: "t:", TTL: time.Hour})}
	})
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	tag := e.proxy.URL + "/v2/app/manifests/v1--0.0.1.1"
	d := checkServed(t, do(t, http.MethodGet, tag, nil), ocispec.MediaTypeImageManifest)
	key := "t:" + d.String()
	client.Expire(t.Context(), key, time.Minute) // as if built long ago
	log.take()
	do(t, http.MethodGet, tag, nil)
	if got := log.take(); len(got) != 1 {
		t.Fatalf("repeat: upstream %v, want one HEAD", got)
	}
	if ttl := client.TTL(t.Context(), key).Val(); ttl < 59*time.Minute {
		t.Errorf("reuse did not renew the TTL: %v", ttl)
	}
	// Redis lost it (eviction, flush) while this replica's memory has
	// it: rebuilt and written again, so other replicas can serve it.
	client.FlushDB(t.Context())
	do(t, http.MethodGet, tag, nil)
	if got := log.take(); len(got) < 3 {
		t.Errorf("after Redis lost it: upstream %v, want a rebuild", got)
	}
	if client.Exists(t.Context(), key).Val() != 1 {
		t.Error("the rebuild did not write Redis again")
	}
}

// TestAccessCacheOutage: after the upstream failed, cached access checks
// are not used: a stored object is not served while the registry is down.
func TestAccessCacheOutage(t *testing.T) {
	var down atomic.Bool
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}, func(o *Options) { o.AccessCacheTTL = time.Minute })
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	d := do(t, http.MethodHead, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil).Header.Get("Docker-Content-Digest")
	byDigest := e.proxy.URL + "/v2/app/manifests/" + d
	if r := do(t, http.MethodGet, byDigest, nil); r.StatusCode != http.StatusOK {
		t.Fatal(r.Status)
	}
	down.Store(true)
	// A failed build (here a repeated tag's HEAD) suspends the cache; a
	// relayed 5xx does not (TestRelayed5xxIsNoOutage).
	do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
	if r := do(t, http.MethodGet, byDigest, nil); r.StatusCode < 500 {
		t.Errorf("stored object with the registry down: %s", r.Status)
	}
}
