package registryproxy

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// redirectingUpstream is a registry behind object storage: blob GETs and
// HEADs the registry (here behind basicAuth) accepts are answered with a 307
// to a signed URL of storage, which serves the blob (with Range) to anyone
// holding the URL.
type redirectingUpstream struct {
	storage  *httptest.Server
	requests atomic.Int64 // requests storage served
	sawAuth  atomic.Bool  // storage was sent an Authorization
}

func newRedirectingUpstream(t *testing.T, blob []byte) *redirectingUpstream {
	ru := &redirectingUpstream{}
	ru.storage = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ru.requests.Add(1)
		if r.Header.Get("Authorization") != "" {
			ru.sawAuth.Store(true)
		}
		if r.URL.Query().Get("X-Amz-Signature") != "signedsecret" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"storage-etag"`)
		http.ServeContent(w, r, "", zeroTime, bytes.NewReader(blob))
	}))
	t.Cleanup(ru.storage.Close)
	return ru
}

func (ru *redirectingUpstream) wrap(h http.Handler) http.Handler {
	return basicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			d := r.URL.Path[strings.LastIndex(r.URL.Path, ":")+1:]
			w.Header().Set("Docker-Content-Digest", "sha256:"+d)
			http.Redirect(w, r, ru.signedURL(d), http.StatusTemporaryRedirect)
			return
		}
		h.ServeHTTP(w, r)
	}))
}

func (ru *redirectingUpstream) signedURL(d string) string {
	return ru.storage.URL + "/bucket/" + d + "?X-Amz-Signature=signedsecret"
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func doNoFollow(t *testing.T, method, u string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return response{resp, b.Bytes()}
}

// TestBlobRedirects: by default the upstream's redirect of a blob GET to
// storage reaches the client unchanged, after the upstream checked the
// caller (a refused caller gets the 401, and storage is never asked); with
// FollowBlobRedirects the proxy fetches the blob from storage itself
// (Range included, without the caller's Authorization, the signed URL
// neither shown to the client nor logged).
func TestBlobRedirects(t *testing.T) {
	blob := make([]byte, 300<<10)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)
	good := []string{"Authorization", "Basic dXNlcjpwYXNz"} // user:pass
	for _, follow := range []bool{false, true} {
		ru := newRedirectingUpstream(t, blob)
		e := newEnv(t, ru.wrap, func(o *Options) { o.FollowBlobRedirects = follow })
		u := e.proxy.URL + "/v2/app/blobs/" + d.String()

		if r := doNoFollow(t, http.MethodGet, u); r.StatusCode != http.StatusUnauthorized || ru.requests.Load() != 0 {
			t.Errorf("follow=%v, no credentials: %s, storage asked %d times; want the upstream's 401 and no storage request", follow, r.Status, ru.requests.Load())
		}
		r := doNoFollow(t, http.MethodGet, u, good...)
		if !follow {
			if want := ru.signedURL(d.Encoded()); r.StatusCode != http.StatusTemporaryRedirect || r.Header.Get("Location") != want {
				t.Errorf("relay: %s Location %q, want 307 %q", r.Status, r.Header.Get("Location"), want)
			}
			if ru.requests.Load() != 0 {
				t.Errorf("relay: the proxy asked storage %d times", ru.requests.Load())
			}
			continue
		}
		if r.StatusCode != http.StatusOK || !bytes.Equal(r.body, blob) || r.Header.Get("Location") != "" {
			t.Fatalf("follow: %s, %d bytes (want %d), Location %q", r.Status, len(r.body), len(blob), r.Header.Get("Location"))
		}
		if got := r.Header.Get("Docker-Content-Digest"); got != d.String() {
			t.Errorf("follow: Docker-Content-Digest %q, want %s", got, d)
		}
		r = doNoFollow(t, http.MethodGet, u, append(good, "Range", "bytes=100-199")...)
		if r.StatusCode != http.StatusPartialContent || !bytes.Equal(r.body, blob[100:200]) {
			t.Errorf("follow, Range: %s, %d bytes", r.Status, len(r.body))
		}
		r = doNoFollow(t, http.MethodHead, u, good...)
		if r.StatusCode != http.StatusOK || r.ContentLength != int64(len(blob)) {
			t.Errorf("follow, HEAD: %s, Content-Length %d", r.Status, r.ContentLength)
		}
		if ru.sawAuth.Load() {
			t.Error("follow: the caller's Authorization was sent to storage")
		}
		if strings.Contains(e.logs.String(), "signedsecret") {
			t.Errorf("follow: signed URL logged:\n%s", e.logs.String())
		}
	}
}

// TestBlobRedirectStorageDown: when storage cannot be reached, a followed
// redirect answers 502 naming storage, and does not count as an upstream
// failure.
func TestBlobRedirectStorageDown(t *testing.T) {
	blob := []byte("blob")
	d := digest.FromBytes(blob)
	ru := newRedirectingUpstream(t, blob)
	ru.storage.Close()
	e := newEnv(t, ru.wrap, func(o *Options) { o.FollowBlobRedirects = true })
	r := doNoFollow(t, http.MethodGet, e.proxy.URL+"/v2/app/blobs/"+d.String(), "Authorization", "Basic dXNlcjpwYXNz")
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.ociError(), "storage") {
		t.Errorf("%s %s, want 502 naming storage", r.Status, r.ociError())
	}
	if e.p.def.failedWithin("app", minute) {
		t.Error("storage being down counted as an upstream failure")
	}
	if strings.Contains(e.logs.String(), "signedsecret") {
		t.Errorf("signed URL logged:\n%s", e.logs.String())
	}
}

var zeroTime time.Time

const minute = time.Minute
