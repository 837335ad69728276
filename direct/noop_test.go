package direct

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// requestLog records the requests a registry served, as "METHOD kind"
// (kind: ping, blob, upload, manifest).
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "ping"
		switch {
		case strings.Contains(r.URL.Path, "/blobs/uploads"):
			kind = "upload"
		case strings.Contains(r.URL.Path, "/blobs/"):
			kind = "blob"
		case strings.Contains(r.URL.Path, "/manifests/"):
			kind = "manifest"
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+kind)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) reset() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	sort.Strings(out)
	return out
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// A no-op re-run (every allotment from the stat cache, the image already
// pushed) asks the registry about each blob once and writes nothing: no
// upload, no manifest or tag put again. The requests it makes are the
// floor of a no-op's time on a remote registry, each one a round trip.
func TestNoopRequests(t *testing.T) {
	var rl requestLog
	srv := httptest.NewServer(rl.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	baseImg, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	baseRef := host + "/b/base:v1"
	bref, _ := name.ParseReference(baseRef)
	if err := remote.Write(bref, baseImg); err != nil {
		t.Fatal(err)
	}
	const n = 6
	dir, desc := testField(t, n)
	cache := t.TempDir()
	tag, _ := name.NewTag(host + "/f/noop:v1")
	opt := options(dir, desc, cache)
	opt.Base = baseRef
	time.Sleep(2 * racyWindow) // older than the racy window: cached
	if _, err := Build(context.Background(), opt, Output{Tags: []name.Tag{tag}}); err != nil {
		t.Fatal(err)
	}
	rl.reset()
	res, err := Build(context.Background(), opt, Output{Tags: []name.Tag{tag}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := rl.reset()
	t.Logf("%d requests: %v", len(reqs), reqs)
	if res.Read != 0 || res.Unread != n {
		t.Fatalf("no-op: %d read, %d unread, want 0 and %d", res.Read, res.Unread, n)
	}
	// n allotments, 2 base layers and the config: one HEAD each.
	if got, want := count(reqs, "HEAD blob"), n+2+1; got > want {
		t.Errorf("%d blob HEADs, want at most %d (one per blob)", got, want)
	}
	// Besides: the base's manifest and config, the manifest's and the
	// tag's HEAD, and one handshake (GET /v2/) per client: the base's and
	// the check's (the pusher is not needed).
	if got, want := len(reqs), n+2+1+2+2+2; got > want {
		t.Errorf("%d requests, want at most %d", got, want)
	}
	for _, w := range []string{"PUT", "POST", "PATCH"} {
		if c := count(reqs, w); c > 0 {
			t.Errorf("%d %s requests on a no-op: %v", c, w, reqs)
		}
	}
}

// The HEADs of a no-op go out together, not one per write worker: with a
// registry that answers each blob's first HEAD after 30 ms, more than the
// two workers' worth are in flight at once. (Only first HEADs count: a
// check that every blob is there before the manifest goes up may ask
// again, together, but the allotments' own checks came first.)
func TestNoopHeadsInParallel(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var inFlight, peak atomic.Int32
	var slow atomic.Bool
	var seen sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, again := seen.LoadOrStore(r.URL.Path, true); !again && slow.Load() && r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(30 * time.Millisecond)
			inFlight.Add(-1)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	const n = 10 // testField's most
	dir, desc := testField(t, n)
	cache := t.TempDir()
	tag, _ := name.NewTag(strings.TrimPrefix(srv.URL, "http://") + "/f/par:v1")
	opt := options(dir, desc, cache) // 2 workers
	time.Sleep(2 * racyWindow)
	if _, err := Build(context.Background(), opt, Output{Tags: []name.Tag{tag}}); err != nil {
		t.Fatal(err)
	}
	seen.Clear()
	slow.Store(true)
	res, err := Build(context.Background(), opt, Output{Tags: []name.Tag{tag}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Unread != n {
		t.Fatalf("no-op: %d unread, want %d", res.Unread, n)
	}
	if p := peak.Load(); p <= int32(opt.Workers) {
		t.Errorf("at most %d blob HEADs in flight at once, want more than the %d write workers", p, opt.Workers)
	}
}
