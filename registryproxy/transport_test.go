package registryproxy

import (
	"compress/gzip"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPassThroughKeepsUpstreamConnections: 8 clients pulling blobs at once,
// twice, reuse the proxy's 8 upstream connections the second time. With
// net/http's default of 2 idle connections per host, 6 of 8 were closed
// after every wave and dialled again: a TCP handshake and slow start over
// the link for most layers of every concurrent pull.
func TestPassThroughKeepsUpstreamConnections(t *testing.T) {
	const conc = 8
	var mu sync.Mutex
	conns := map[string]bool{}
	arrived := make(chan struct{}, conc)
	release := make(chan struct{})
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/v2/app/blobs/") {
				h.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			conns[r.RemoteAddr] = true
			mu.Unlock()
			// Hold every request until all are in: they are concurrent
			// upstream, so each has a connection of its own.
			arrived <- struct{}{}
			<-release
			_, _ = w.Write([]byte("blob"))
		})
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	wave := func() int {
		mu.Lock()
		clear(conns)
		mu.Unlock()
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(e.proxy.URL + "/v2/app/blobs/sha256:" + strings.Repeat("1", 64))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		for range conc {
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
				t.Fatal("the blob GETs did not all reach the upstream")
			}
		}
		release <- struct{}{} // one at a time is enough: a buffered send would race the next wave
		for range conc - 1 {
			release <- struct{}{}
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
	first := wave()
	seen := map[string]bool{}
	mu.Lock()
	for c := range conns {
		seen[c] = true
	}
	mu.Unlock()
	wave()
	mu.Lock()
	var fresh int
	for c := range conns {
		if !seen[c] {
			fresh++
		}
	}
	mu.Unlock()
	if first != conc || fresh != 0 {
		t.Errorf("upstream connections: %d in the first wave, %d new in the second; want %d, then none new", first, fresh, conc)
	}
}

// TestPassThroughKeepsEncoding: the proxy asks the upstream for what the
// client asked for. net/http's transport added Accept-Encoding: gzip to a
// request that had none and decompressed the answer on the proxy's CPU.
func TestPassThroughKeepsEncoding(t *testing.T) {
	var sawGzip sync.Map
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/v2/app/blobs/") {
				h.ServeHTTP(w, r)
				return
			}
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				_, _ = w.Write([]byte("plain"))
				return
			}
			sawGzip.Store(r.URL.Path, true)
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte("plain"))
			_ = zw.Close()
		})
	})
	path := "/v2/app/blobs/sha256:" + strings.Repeat("2", 64)
	req, _ := http.NewRequest(http.MethodGet, e.proxy.URL+path, nil)
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, ok := sawGzip.Load(path); ok || string(body) != "plain" || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("a client that asked for no encoding: upstream asked for gzip %v, got %q (Content-Encoding %q)", ok, body, resp.Header.Get("Content-Encoding"))
	}
}

// TestUpstreamTransportHTTP1: the default transport speaks HTTP/1.1 to a
// TLS registry that offers HTTP/2 (docs/benchmarks.md, experiment 8).
func TestUpstreamTransportHTTP1(t *testing.T) {
	var proto atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	// net/http's DefaultTransport, once used, offers h2 in its TLS
	// config, which a clone copies: the registry then answered in HTTP/2
	// a client that spoke HTTP/1.1.
	if resp, err := http.Get(srv.URL); err == nil { // (an unknown certificate)
		resp.Body.Close()
	}
	tr := upstreamTransport()
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := proto.Load(); got != "HTTP/1.1" || resp.ProtoMajor != 1 {
		t.Errorf("the registry saw %v, the proxy got %s; want HTTP/1.1", got, resp.Proto)
	}
}
