package registryproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/field"
)

var grid = []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}, {Row: 2, Col: 2}}

// env is an in-memory registry behind a proxy.
type env struct {
	t        *testing.T
	registry *httptest.Server // direct access, for pushing test images
	upstream *httptest.Server // what the proxy talks to (registry + wrappers)
	proxy    *httptest.Server
	p        *Proxy
	mem      *MemoryStore
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv starts a registry, wraps it in wrap (if not nil) as the upstream,
// and starts a proxy in front of it configured by opts.
func newEnv(t *testing.T, wrap func(http.Handler) http.Handler, opts ...func(*Options)) *env {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	e := &env{t: t, registry: httptest.NewServer(reg), logs: &syncBuffer{}}
	t.Cleanup(e.registry.Close)
	h := http.Handler(reg)
	if wrap != nil {
		h = wrap(h)
	}
	e.upstream = httptest.NewServer(h)
	t.Cleanup(e.upstream.Close)
	e.mem = NewMemoryStore(1 << 20)
	o := Options{
		Upstream: mustURL(e.upstream.URL),
		Store:    e.mem,
		Logger:   slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	e.startProxy(o)
	return e
}

func (e *env) startProxy(o Options) {
	p, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.p = p
	e.proxy = httptest.NewServer(p)
	e.t.Cleanup(e.proxy.Close)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

type response struct {
	*http.Response
	body []byte
}

func (r response) ociError() string {
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return "(not an OCI error: " + string(r.body) + ")"
	}
	return e.Errors[0].Code + ": " + e.Errors[0].Message
}

func do(t *testing.T, method, u string, body []byte, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, b}
}

// push puts img's blobs and manifest into the registry at base (a server
// URL) under repo:ref.
func push(t *testing.T, base, repo, ref string, img *partitiontest.Image, hdr ...string) {
	t.Helper()
	for _, b := range img.Blobs() {
		r := do(t, http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/?digest=%s", base, repo, digest.FromBytes(b)), b, hdr...)
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("blob upload: %s %s", r.Status, r.body)
		}
	}
	pushManifest(t, base, repo, ref, img.MediaType, img.Manifest, hdr...)
}

func pushManifest(t *testing.T, base, repo, ref, mediaType string, data []byte, hdr ...string) {
	t.Helper()
	r := do(t, http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, ref), data, append([]string{"Content-Type", mediaType}, hdr...)...)
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("manifest push: %s %s", r.Status, r.body)
	}
}

// sel parses a selection; shared with the other rewriter tests.
var sel = partitiontest.Selection

// checkServed checks the headers of a served manifest or blob.
func checkServed(t *testing.T, r response, wantType string) digest.Digest {
	t.Helper()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", r.Status, r.body)
	}
	d := digest.Digest(r.Header.Get("Docker-Content-Digest"))
	if d != digest.FromBytes(r.body) {
		t.Errorf("Docker-Content-Digest %s does not match the body %s", d, digest.FromBytes(r.body))
	}
	if got := r.Header.Get("Content-Type"); got != wantType {
		t.Errorf("Content-Type %q, want %q", got, wantType)
	}
	if r.Header.Get("Content-Length") != fmt.Sprint(len(r.body)) {
		t.Errorf("Content-Length %q, body is %d bytes", r.Header.Get("Content-Length"), len(r.body))
	}
	if r.Header.Get("ETag") != `"`+d.String()+`"` {
		t.Errorf("ETag %q", r.Header.Get("ETag"))
	}
	return d
}

func TestPartitionImage(t *testing.T) {
	for _, mt := range []string{ocispec.MediaTypeImageManifest, partition.MediaTypeDockerManifest} {
		t.Run(mt, func(t *testing.T) {
			e := newEnv(t, nil)
			img := partitiontest.New(mt, 1, grid...)
			push(t, e.registry.URL, "team/app", "v1", img)

			for _, s := range []string{"0.0.0.1", "0.0.0.0--2.2.2.2"} { // a rectangle and a union
				r := do(t, http.MethodGet, e.proxy.URL+"/v2/team/app/manifests/v1--"+s, nil, "Accept", mt)
				d := checkServed(t, r, mt)
				// The rewriter is deterministic, so the proxy must serve
				// exactly what it computes locally.
				want, err := partition.Image(img.Manifest, mt, img.Config, sel(t, s))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(r.body, want.Manifest) || d != want.ManifestDigest {
					t.Fatalf("served manifest differs from the local partition:\n%s\n%s", r.body, want.Manifest)
				}
				cfg := do(t, http.MethodGet, e.proxy.URL+"/v2/team/app/blobs/"+want.ConfigDigest.String(), nil)
				checkServed(t, cfg, "application/octet-stream")
				if !bytes.Equal(cfg.body, want.Config) {
					t.Error("served config differs from the local partition")
				}
				// Layers are the upstream's, passed through.
				var m ocispec.Manifest
				_ = json.Unmarshal(r.body, &m)
				last := m.Layers[len(m.Layers)-1]
				lr := do(t, http.MethodGet, e.proxy.URL+"/v2/team/app/blobs/"+last.Digest.String(), nil)
				if lr.StatusCode != http.StatusOK || digest.FromBytes(lr.body) != last.Digest {
					t.Errorf("layer pass-through: %s", lr.Status)
				}
			}
		})
	}
}

func TestPartitionOfPartition(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	first, err := partition.Image(img.Manifest, img.MediaType, img.Config, sel(t, "0.0.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	// Someone pushed a partition as an image of its own.
	push(t, e.registry.URL, "app", "v1", img)
	push(t, e.registry.URL, "app", "part", &partitiontest.Image{MediaType: first.MediaType, Manifest: first.Manifest, Config: first.Config})

	r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/part--1.1.2.2", nil)
	checkServed(t, r, ocispec.MediaTypeImageManifest)
	var m ocispec.Manifest
	_ = json.Unmarshal(r.body, &m)
	if len(m.Layers) != 2 || m.Layers[1].Digest != digest.FromBytes(img.LayerFor(field.Cell{Row: 1, Col: 1})) {
		t.Errorf("partition of partition layers: %v", m.Layers)
	}
	if m.Annotations[partition.LabelSource] != first.ManifestDigest.String() {
		t.Errorf("source annotation %q, want %s", m.Annotations[partition.LabelSource], first.ManifestDigest)
	}
}

func TestPartitionIndex(t *testing.T) {
	for _, tc := range []struct{ index, manifest string }{
		{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest},
		{partition.MediaTypeDockerManifestList, partition.MediaTypeDockerManifest},
	} {
		t.Run(tc.index, func(t *testing.T) { testPartitionIndex(t, tc.index, tc.manifest) })
	}
}

func testPartitionIndex(t *testing.T, indexType, manifestType string) {
	e := newEnv(t, nil)
	amd := partitiontest.New(manifestType, 1, grid...)
	arm := partitiontest.New(manifestType, 2, grid[:2]...)
	index, manifests := partitiontest.Index(indexType,
		partitiontest.Platform{Image: amd, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Attest: true},
		partitiontest.Platform{Image: arm, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, Attest: true})
	for _, m := range manifests {
		push(t, e.registry.URL, "multi", m.Digest().String(), m)
	}
	pushManifest(t, e.registry.URL, "multi", "v1", indexType, index)
	// An index whose platforms are not 2DFS images has no partitions.
	plain := partitiontest.Plain(manifestType, 1)
	push(t, e.registry.URL, "multi", plain.Digest().String(), plain)
	plainIndex, _ := partitiontest.Index(indexType, partitiontest.Platform{Image: plain, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	pushManifest(t, e.registry.URL, "multi", "plain", indexType, plainIndex)
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/multi/manifests/plain--0.0.0.0", nil); r.StatusCode != http.StatusNotFound || !strings.Contains(r.ociError(), "not a 2DFS image") {
		t.Errorf("index of plain images: %s %s", r.Status, r.ociError())
	}

	r := do(t, http.MethodGet, e.proxy.URL+"/v2/multi/manifests/v1--0.1.0.1", nil, "Accept", indexType)
	checkServed(t, r, indexType)
	var idx ocispec.Index
	if err := json.Unmarshal(r.body, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2 platforms and no attestations: %s", len(idx.Manifests), r.body)
	}
	for i, arch := range []string{"amd64", "arm64"} {
		d := idx.Manifests[i]
		if d.Platform == nil || d.Platform.Architecture != arch {
			t.Errorf("manifests[%d] platform %v, want %s", i, d.Platform, arch)
		}
		child := do(t, http.MethodGet, e.proxy.URL+"/v2/multi/manifests/"+d.Digest.String(), nil)
		if checkServed(t, child, manifestType) != d.Digest {
			t.Fatalf("child %d digest mismatch", i)
		}
		var m ocispec.Manifest
		_ = json.Unmarshal(child.body, &m)
		if cfg := do(t, http.MethodGet, e.proxy.URL+"/v2/multi/blobs/"+m.Config.Digest.String(), nil); cfg.StatusCode != http.StatusOK {
			t.Errorf("child %d config: %s", i, cfg.Status)
		}
		// Each platform kept its base and allotment (0,1).
		wantLayers := map[string]int{"amd64": 2, "arm64": 3}[arch]
		if len(m.Layers) != wantLayers {
			t.Errorf("%s partition has %d layers, want %d", arch, len(m.Layers), wantLayers)
		}
	}
}

// strictAccept makes the upstream behave like the distribution registry:
// a manifest whose type the request's Accept does not list is a 404.
func strictAccept(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		mt := rec.Header().Get("Content-Type")
		if rec.Code == http.StatusOK && !strings.Contains(strings.Join(r.Header.Values("Accept"), ","), mt) {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"%s found, but accept header does not support it"}]}`, mt)
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// TestIndexAcceptOnlyIndex asks for a partition index with an Accept that
// lists only index types (go-containerregistry's remote.Index does): the
// platform manifests are still fetched, whatever the client accepts.
func TestIndexAcceptOnlyIndex(t *testing.T) {
	e := newEnv(t, strictAccept)
	amd := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	index, manifests := partitiontest.Index(ocispec.MediaTypeImageIndex,
		partitiontest.Platform{Image: amd, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	for _, m := range manifests {
		push(t, e.registry.URL, "multi", m.Digest().String(), m)
	}
	pushManifest(t, e.registry.URL, "multi", "v1", ocispec.MediaTypeImageIndex, index)
	accept := ocispec.MediaTypeImageIndex + "," + partition.MediaTypeDockerManifestList
	r := do(t, http.MethodGet, e.proxy.URL+"/v2/multi/manifests/v1--0.0.0.0", nil, "Accept", accept)
	checkServed(t, r, ocispec.MediaTypeImageIndex)
	// The wrapper really refuses: the source's platform manifest with the
	// same Accept is a 404 at the registry.
	if r := do(t, http.MethodGet, e.upstream.URL+"/v2/multi/manifests/"+amd.Digest().String(), nil, "Accept", accept); r.StatusCode != http.StatusNotFound {
		t.Fatalf("strictAccept did not refuse: %s", r.Status)
	}
}

func TestHeadThenGetByDigest(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)

	head := do(t, http.MethodHead, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
	if head.StatusCode != http.StatusOK || len(head.body) != 0 {
		t.Fatalf("HEAD: %s, %d body bytes", head.Status, len(head.body))
	}
	d := head.Header.Get("Docker-Content-Digest")
	if d == "" || head.Header.Get("Content-Length") == "0" || head.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest {
		t.Fatalf("HEAD headers: %v", head.Header)
	}
	get := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/"+d, nil)
	if checkServed(t, get, ocispec.MediaTypeImageManifest).String() != d {
		t.Error("GET by digest after HEAD served another digest")
	}
	if hb := do(t, http.MethodHead, e.proxy.URL+"/v2/app/manifests/"+d, nil); hb.StatusCode != http.StatusOK || hb.Header.Get("Content-Length") != fmt.Sprint(len(get.body)) {
		t.Errorf("HEAD by digest: %s %v", hb.Status, hb.Header)
	}

	// If-None-Match with the ETag: 304, on the tag and by digest.
	for _, ref := range []string{"v1--0.0.1.1", d} {
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/"+ref, nil, "If-None-Match", `"`+d+`"`)
		if r.StatusCode != http.StatusNotModified || len(r.body) != 0 {
			t.Errorf("If-None-Match on %s: %s", ref, r.Status)
		}
	}
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil, "If-None-Match", `"sha256:0000"`); r.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match with another ETag: %s", r.Status)
	}
}

func TestPassThroughRange(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)
	layer := img.Layers[1]
	r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/blobs/"+digest.FromBytes(layer).String(), nil, "Range", "bytes=2-5")
	if r.StatusCode != http.StatusPartialContent || string(r.body) != string(layer[2:6]) {
		t.Errorf("Range: %s %q, want 206 %q", r.Status, r.body, layer[2:6])
	}
	// Tags list and plain tags pass through.
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/tags/list", nil); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"v1"`) {
		t.Errorf("tags list: %s %s", r.Status, r.body)
	}
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1", nil); r.StatusCode != http.StatusOK || !bytes.Equal(r.body, img.Manifest) {
		t.Errorf("plain tag: %s", r.Status)
	}
}

func TestPushes(t *testing.T) {
	// The upstream answers uploads with absolute Locations, like most
	// registries do; the proxy must point them back at itself.
	absolute := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(&absLocation{ResponseWriter: w, host: r.Host}, r)
		})
	}
	e := newEnv(t, absolute)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)

	r := do(t, http.MethodPost, e.proxy.URL+"/v2/app/blobs/uploads/", nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/v2/app/blobs/uploads/") {
		t.Fatalf("upload start: %s, Location %q", r.Status, loc)
	}
	// Push an image through the proxy: uploads, then a plain tag.
	push(t, e.proxy.URL, "app", "v1", img)

	r = do(t, http.MethodPut, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", img.Manifest, "Content-Type", img.MediaType)
	if r.StatusCode != http.StatusForbidden || !strings.HasPrefix(r.ociError(), "DENIED") {
		t.Errorf("push to partition tag: %s %s", r.Status, r.ociError())
	}
	if r := do(t, http.MethodDelete, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("delete of partition tag: %s", r.Status)
	}
	if r := do(t, http.MethodGet, e.registry.URL+"/v2/app/manifests/v1--0.0.1.1", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("partition tag reached the upstream: %s", r.Status)
	}

	ro := newEnv(t, nil, func(o *Options) { o.ReadOnly = true })
	if r := do(t, http.MethodPost, ro.proxy.URL+"/v2/app/blobs/uploads/", nil); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("read-only upload: %s", r.Status)
	}
	if r := do(t, http.MethodPut, ro.proxy.URL+"/v2/app/manifests/v2", img.Manifest); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("read-only manifest push: %s", r.Status)
	}
}

type absLocation struct {
	http.ResponseWriter
	host string
}

func (a *absLocation) WriteHeader(code int) {
	if l := a.Header().Get("Location"); strings.HasPrefix(l, "/") {
		a.Header().Set("Location", "http://"+a.host+l)
	}
	a.ResponseWriter.WriteHeader(code)
}

func TestMalformedAndNot2DFS(t *testing.T) {
	e := newEnv(t, nil)
	push(t, e.registry.URL, "app", "plain", partitiontest.Plain(ocispec.MediaTypeImageManifest, 2))
	for tag, want := range map[string]string{
		"v1--1.2.3":      "--1.2.3",
		"v1--a.b.c.d":    "--a.b.c.d",
		"v1--3.0.1.1":    "rows are inverted",
		"v1--0.0.0.1024": "over 1023",
	} {
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/"+tag, nil)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.ociError(), want) {
			t.Errorf("%s: %s %s, want 400 naming %q", tag, r.Status, r.ociError(), want)
		}
	}
	r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/plain--0.0.1.1", nil)
	if r.StatusCode != http.StatusNotFound || !strings.Contains(r.ociError(), "not a 2DFS image") {
		t.Errorf("non-2DFS: %s %s", r.Status, r.ociError())
	}
	r = do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/missing--0.0.1.1", nil)
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("missing base tag: %s %s", r.Status, r.body)
	}
	if e.mem.Len() != 0 {
		t.Errorf("failed builds stored %d objects", e.mem.Len())
	}
}

// tamper rewrites upstream GET responses for paths containing match after
// the registry wrote them: edit changes the headers and returns the body.
func tamper(match string, edit func(http.Header, []byte) []byte) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, match) || r.Method != http.MethodGet {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := edit(rec.Header(), rec.Body.Bytes())
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}

func TestUpstreamFailures(t *testing.T) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	cfgDigest := digest.FromBytes(img.Config).Encoded()

	t.Run("manifest digest mismatch", func(t *testing.T) {
		e := newEnv(t, tamper("/manifests/v1", func(h http.Header, body []byte) []byte {
			return bytes.Replace(body, []byte(`"handmade"`), []byte(`"evil"`), 1)
		}))
		push(t, e.registry.URL, "app", "v1", img)
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
		if r.StatusCode != http.StatusBadGateway || e.mem.Len() != 0 {
			t.Errorf("%s %s, %d objects stored", r.Status, r.ociError(), e.mem.Len())
		}
	})
	t.Run("config digest mismatch", func(t *testing.T) {
		e := newEnv(t, tamper(cfgDigest, func(h http.Header, body []byte) []byte {
			return bytes.Replace(body, []byte(`"amd64"`), []byte(`"arm64"`), 1)
		}))
		push(t, e.registry.URL, "app", "v1", img)
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
		if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.ociError(), "config") || e.mem.Len() != 0 {
			t.Errorf("%s %s, %d objects stored", r.Status, r.ociError(), e.mem.Len())
		}
	})
	t.Run("too big", func(t *testing.T) {
		e := newEnv(t, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
				_, _ = w.Write(bytes.Repeat([]byte(" "), partition.MaxManifestBytes+10))
			})
		})
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
		if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.ociError(), "over") {
			t.Errorf("%s %s", r.Status, r.ociError())
		}
	})
	t.Run("slow", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		e := newEnv(t, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})
		}, func(o *Options) { o.BuildTimeout = 100 * time.Millisecond })
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
		if r.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("%s %s", r.Status, r.ociError())
		}
	})
	t.Run("down", func(t *testing.T) {
		e := newEnv(t, nil)
		e.upstream.Close()
		for _, path := range []string{"/v2/app/manifests/v1--0.0.1.1", "/v2/app/blobs/" + digest.FromString("x").String(), "/v2/app/manifests/v1"} {
			if r := do(t, http.MethodGet, e.proxy.URL+path, nil); r.StatusCode != http.StatusBadGateway {
				t.Errorf("%s: %s %s", path, r.Status, r.ociError())
			}
		}
		if r := do(t, http.MethodGet, e.proxy.URL+"/readyz", nil); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz with the upstream down: %s", r.Status)
		}
	})
	t.Run("rate limited", func(t *testing.T) {
		e := newEnv(t, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "7")
				writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "slow down")
			})
		})
		r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "7" || !strings.Contains(r.ociError(), "TOOMANYREQUESTS") {
			t.Errorf("%s %v %s", r.Status, r.Header, r.body)
		}
	})
}

// basicAuth guards a registry: every request needs user:pass.
func basicAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test-registry"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestAuthRelay(t *testing.T) {
	e := newEnv(t, basicAuth)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "private", "v1", img)
	good := []string{"Authorization", "Basic " + "dXNlcjpwYXNz"}    // user:pass
	bad := []string{"Authorization", "Basic " + "dXNlcjp3cm9uZw=="} // user:wrong
	tag := e.proxy.URL + "/v2/private/manifests/v1--0.0.1.1"

	for _, hdr := range [][]string{nil, bad} {
		r := do(t, http.MethodGet, tag, nil, hdr...)
		if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Basic realm="test-registry"` {
			t.Errorf("unauthorized partition: %s %v", r.Status, r.Header)
		}
	}
	ok := do(t, http.MethodGet, tag, nil, good...)
	d := checkServed(t, ok, ocispec.MediaTypeImageManifest)
	var m ocispec.Manifest
	_ = json.Unmarshal(ok.body, &m)

	// The partition now sits in the store; it must still not reach
	// callers who cannot read the source.
	for _, path := range []string{"/v2/private/manifests/" + d.String(), "/v2/private/blobs/" + m.Config.Digest.String()} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := do(t, method, e.proxy.URL+path, nil, bad...)
			if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" || bytes.Contains(r.body, []byte("layers")) || r.Header.Get("Docker-Content-Digest") != "" {
				t.Errorf("%s %s without credentials: %s %v", method, path, r.Status, r.Header)
			}
		}
		if r := do(t, http.MethodGet, e.proxy.URL+path, nil, good...); r.StatusCode != http.StatusOK {
			t.Errorf("GET %s with credentials: %s", path, r.Status)
		}
	}
	// Another repository that does not hold the source cannot serve it.
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/other/manifests/"+d.String(), nil, good...); r.StatusCode != http.StatusNotFound {
		t.Errorf("partition served from a repository without its source: %s", r.Status)
	}
	// Pass-through relays the challenge too.
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/", nil); r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("/v2/ ping: %s %v", r.Status, r.Header)
	}
	// No credentials in logs.
	if logs := e.logs.String(); strings.Contains(logs, "dXNlcjpwYXNz") || strings.Contains(logs, "dXNlcjp3cm9uZw") {
		t.Errorf("credentials in logs:\n%s", logs)
	}
}

func TestDirStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	withDir := func(o *Options) {
		ds, err := NewDirStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		o.Store = TieredStore{NewMemoryStore(1 << 20), ds}
	}
	e := newEnv(t, nil, withDir)
	img := partitiontest.New(partition.MediaTypeDockerManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)
	d := do(t, http.MethodHead, e.proxy.URL+"/v2/app/manifests/v1--2.2.2.2", nil).Header.Get("Docker-Content-Digest")
	if d == "" {
		t.Fatal("no digest")
	}

	o := Options{Upstream: mustURL(e.upstream.URL), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	withDir(&o)
	e.startProxy(o) // a new instance: empty memory, same directory
	r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/"+d, nil)
	if checkServed(t, r, partition.MediaTypeDockerManifest).String() != d {
		t.Error("restarted proxy served another digest")
	}
}

func TestSingleflight(t *testing.T) {
	var tagGets atomic.Int32
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/manifests/v1") {
				tagGets.Add(1)
				time.Sleep(300 * time.Millisecond) // let every request join
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	var wg sync.WaitGroup
	digests := make([]string, 8)
	for i := range digests {
		wg.Go(func() {
			resp, err := http.Get(e.proxy.URL + "/v2/app/manifests/v1--0.0.1.1")
			if err == nil {
				digests[i] = resp.Header.Get("Docker-Content-Digest")
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := tagGets.Load(); n != 1 {
		t.Errorf("%d upstream fetches for 8 concurrent identical requests, want 1", n)
	}
	for _, d := range digests {
		if d == "" || d != digests[0] {
			t.Errorf("digests %v", digests)
			break
		}
	}
	// A caller with other credentials does not share the build.
	do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil, "Authorization", "Bearer other")
	if n := tagGets.Load(); n != 2 {
		t.Errorf("%d upstream fetches, want 2", n)
	}
}

func TestMirrorMode(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, reg.URL, "library/app", "v1", img)

	p, err := New(Options{
		Mirrors: map[string]*url.URL{"registry.example": mustURL(reg.URL)},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	if r := do(t, http.MethodGet, srv.URL+"/v2/library/app/manifests/v1--0.0.0.0?ns=registry.example", nil); r.StatusCode != http.StatusOK {
		t.Errorf("allowed mirror: %s %s", r.Status, r.body)
	}
	if r := do(t, http.MethodGet, srv.URL+"/v2/library/app/manifests/v1?ns=registry.example", nil); r.StatusCode != http.StatusOK {
		t.Errorf("allowed mirror pass-through: %s %s", r.Status, r.body)
	}
	r := do(t, http.MethodPost, srv.URL+"/v2/library/app/blobs/uploads/?ns=registry.example", nil)
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/v2/library/app/blobs/uploads/") || !strings.Contains(loc, "ns=registry.example") {
		t.Errorf("mirror upload: %s, Location %q", r.Status, loc)
	}
	for _, q := range []string{"?ns=evil.example", "?ns=" + strings.TrimPrefix(reg.URL, "http://") + "x", ""} {
		if r := do(t, http.MethodGet, srv.URL+"/v2/library/app/manifests/v1"+q, nil); r.StatusCode != http.StatusForbidden {
			t.Errorf("ns %q: %s", q, r.Status)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, nil)
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))
	do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
	for _, c := range []struct{ path, want string }{
		{"/livez", "ok"},
		{"/readyz", "ok"},
		{"/metrics", `tdfs_proxy_partition_builds_total{result="ok"} 1`},
		{"/metrics", "tdfs_proxy_memory_store_bytes "},
	} {
		path, want := c.path, c.want
		r := do(t, http.MethodGet, e.proxy.URL+path, nil)
		if r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), want) {
			t.Errorf("%s: %s, want %q in\n%s", path, r.Status, want, r.body)
		}
	}
	// Query strings (signed URLs) stay out of logs.
	do(t, http.MethodGet, e.proxy.URL+"/v2/app/blobs/"+digest.FromString("x").String()+"?X-Amz-Signature=topsecret", nil)
	if strings.Contains(e.logs.String(), "topsecret") {
		t.Errorf("query string logged:\n%s", e.logs.String())
	}
}

// TestRedirects: blob reads the upstream redirects to object storage reach
// the client untouched, and the proxy's own config fetch follows them.
func TestRedirects(t *testing.T) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	var sawAuth atomic.Bool
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
		for _, b := range img.Blobs() {
			if strings.HasSuffix(r.URL.Path, digest.FromBytes(b).Encoded()) {
				_, _ = w.Write(b)
				return
			}
		}
		http.NotFound(w, r)
	}))
	defer storage.Close()
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				d := r.URL.Path[strings.LastIndex(r.URL.Path, ":")+1:]
				http.Redirect(w, r, storage.URL+"/bucket/"+d+"?X-Amz-Signature=signedsecret", http.StatusTemporaryRedirect)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	push(t, e.registry.URL, "app", "v1", img)

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	layer := digest.FromBytes(img.Layers[0])
	resp, err := noFollow.Get(e.proxy.URL + "/v2/app/blobs/" + layer.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := storage.URL + "/bucket/" + layer.Encoded() + "?X-Amz-Signature=signedsecret"; resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %s Location %q, want 307 %q", resp.Status, resp.Header.Get("Location"), want)
	}

	r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil, "Authorization", "Bearer token-for-registry")
	checkServed(t, r, ocispec.MediaTypeImageManifest)
	if sawAuth.Load() {
		t.Error("the registry's Authorization was sent to the redirect target")
	}
	if strings.Contains(e.logs.String(), "signedsecret") {
		t.Errorf("signed URL logged:\n%s", e.logs.String())
	}
}

func TestCatalogAndReferrersPassThrough(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)
	if r := do(t, http.MethodGet, e.proxy.URL+"/v2/_catalog", nil); r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"app"`) {
		t.Errorf("catalog: %s %s", r.Status, r.body)
	}
	direct := do(t, http.MethodGet, e.registry.URL+"/v2/app/referrers/"+img.Digest().String(), nil)
	proxied := do(t, http.MethodGet, e.proxy.URL+"/v2/app/referrers/"+img.Digest().String(), nil)
	if direct.StatusCode != proxied.StatusCode || !bytes.Equal(direct.body, proxied.body) {
		t.Errorf("referrers: direct %s %s, proxied %s %s", direct.Status, direct.body, proxied.Status, proxied.body)
	}
}

type failingStore struct{ MemoryStore }

func (*failingStore) Put(context.Context, *Object) error { return errors.New("disk full") }

func TestBrokenImageAndStore(t *testing.T) {
	e := newEnv(t, nil)
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	// A record gone stale: the history no longer names allotment 1,0.
	stale := &partitiontest.Image{MediaType: img.MediaType, Layers: img.Layers,
		Config: bytes.Replace(img.Config, []byte("2dfs allotment 1,0"), []byte("rebuilt"), 1)}
	var m map[string]any
	_ = json.Unmarshal(img.Manifest, &m)
	m["config"] = map[string]any{"mediaType": ocispec.MediaTypeImageConfig, "digest": digest.FromBytes(stale.Config), "size": len(stale.Config)}
	stale.Manifest, _ = json.Marshal(m)
	push(t, e.registry.URL, "app", "stale", stale)
	r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/stale--0.0.1.1", nil)
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.ociError(), "stale") {
		t.Errorf("stale record: %s %s", r.Status, r.ociError())
	}

	f := newEnv(t, nil, func(o *Options) { o.Store = &failingStore{*NewMemoryStore(1 << 20)} })
	push(t, f.registry.URL, "app", "v1", img)
	r = do(t, http.MethodGet, f.proxy.URL+"/v2/app/manifests/v1--0.0.1.1", nil)
	if r.StatusCode != http.StatusInternalServerError || bytes.Contains(r.body, []byte("layers")) {
		t.Errorf("store failure: %s %s", r.Status, r.body)
	}
}

// TestStreaming: a pass-through body reaches the client while the upstream
// is still sending it; nothing buffers whole responses.
func TestStreaming(t *testing.T) {
	firstSeen := make(chan struct{})
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte("first"))
			w.(http.Flusher).Flush()
			select {
			case <-firstSeen:
			case <-time.After(5 * time.Second):
				return // the client never saw the first part: the test fails below
			}
			_, _ = w.Write([]byte("second"))
		})
	})
	resp, err := http.Get(e.proxy.URL + "/v2/app/blobs/" + digest.FromString("big").String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first part: %q %v", buf, err)
	}
	close(firstSeen)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Errorf("rest = %q", rest)
	}
}

// TestPartitionTagsStayLocal: partition-shaped tags, valid or not, are never
// sent to the upstream.
func TestPartitionTagsStayLocal(t *testing.T) {
	var leaked atomic.Value
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "--") {
				leaked.Store(r.Method + " " + r.URL.Path)
			}
			h.ServeHTTP(w, r)
		})
	})
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	push(t, e.registry.URL, "app", "v1", img)
	for _, c := range []struct{ method, tag string }{
		{http.MethodGet, "v1--0.0.1.1"}, {http.MethodHead, "v1--0.0.1.1"}, {http.MethodGet, "v1--1.2.3"},
		{http.MethodPut, "v1--0.0.1.1"}, {http.MethodDelete, "v1--a.b.c.d"}, {http.MethodGet, "v1--9.9.9.9"},
	} {
		do(t, c.method, e.proxy.URL+"/v2/app/manifests/"+c.tag, img.Manifest, "Content-Type", img.MediaType)
	}
	if v := leaked.Load(); v != nil {
		t.Errorf("partition tag reached the upstream: %v", v)
	}
}
