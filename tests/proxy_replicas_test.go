package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tdfs-kit/tdfs/registryproxy"
)

// resolve HEADs a partition tag on a proxy and returns the digest.
func resolve(t *testing.T, px *proxyProc, repo, tag string) string {
	t.Helper()
	st, h, _ := regGet(t, http.MethodHead, "http://"+px.addr+"/v2/"+repo+"/manifests/"+tag, nil)
	d := h.Get("Docker-Content-Digest")
	if st != 200 || !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("HEAD %s on %s: %d, digest %q", tag, px.addr, st, d)
	}
	return d
}

// fetchByDigest GETs a manifest by digest and then its config blob from a
// proxy, checking both hash to their digests, and returns the manifest.
func fetchByDigest(t *testing.T, px *proxyProc, repo, d string) []byte {
	t.Helper()
	base := "http://" + px.addr + "/v2/" + repo
	st, _, m := regGet(t, http.MethodGet, base+"/manifests/"+d, nil)
	if st != 200 || sha256Digest(m) != d {
		t.Fatalf("GET %s by digest on %s: %d %s", d, px.addr, st, m)
	}
	cfg, _ := manifestLayers(t, m)
	st, _, c := regGet(t, http.MethodGet, base+"/blobs/"+cfg, nil)
	if st != 200 || sha256Digest(c) != cfg {
		t.Fatalf("GET config %s on %s: %d", cfg, px.addr, st)
	}
	return m
}

// TestProxyReplicasRedis runs two proxy replicas sharing a real Redis: a
// tag resolved on one is fetched by digest (manifest and config) from the
// other, by raw requests, crane and containerd; a replica without Redis
// does not have it.
func TestProxyReplicasRedis(t *testing.T) {
	f := proxyField(t)
	rds, redisProc := startRedisServer(t)
	a := startProxy(t, env.registry, "-redis-addr", rds)
	b := startProxy(t, env.registry, "-redis-addr", rds)
	lone := startProxy(t, env.registry)
	const selection = "1.0.1.1"

	d := resolve(t, a, f.repo, "v1--"+selection)
	m := fetchByDigest(t, b, f.repo, d)
	if _, ls := manifestLayers(t, m); !slices.Equal(ls, f.wantLayers(t, selection)) {
		t.Fatalf("layers from replica b: %v, want %v", ls, f.wantLayers(t, selection))
	}
	// Control: a replica that does not share the store does not know it.
	if st, _, _ := regGet(t, http.MethodGet, "http://"+lone.addr+"/v2/"+f.repo+"/manifests/"+d, nil); st != http.StatusNotFound {
		t.Fatalf("a proxy without Redis answered %d for the digest", st)
	}
	// The objects are in Redis under the documented keys.
	client := redis.NewClient(&redis.Options{Addr: rds})
	defer client.Close()
	cfg, _ := manifestLayers(t, m)
	for _, k := range []string{d, cfg} {
		if n, err := client.Exists(context.Background(), registryproxy.DefaultRedisPrefix+k).Result(); err != nil || n != 1 {
			t.Fatalf("redis key for %s: %d, %v", k, n, err)
		}
	}

	// Real clients on b, by digest only.
	crane(t, nil, "pull", b.addr+"/"+f.repo+"@"+d, filepath.Join(t.TempDir(), "p.tar"))
	out, got := ctrPullRun(t, b.addr+"/"+f.repo+"@"+d, filesScript)
	if out != f.wantFiles(t, selection) || got != d {
		t.Fatalf("ctr via replica b: %s\n%s\nwant %s\n%s", got, out, d, f.wantFiles(t, selection))
	}

	// A restarted replica (empty memory) still has it, from Redis.
	b.restart(t)
	fetchByDigest(t, b, f.repo, d)
	if st := httpStatus("http://" + b.addr + "/readyz"); st != 200 {
		t.Fatalf("/readyz with Redis up: %d", st)
	}

	// Both replicas build the same digest for the same selection.
	if d2 := resolve(t, b, f.repo, "v1--"+selection); d2 != d {
		t.Fatalf("replicas disagree: %s vs %s", d, d2)
	}

	// Redis down: not ready; a new partition is not served (it could not
	// be shared), with a 500 and no digest; what a replica holds in memory
	// still is.
	redisProc.kill()
	if st := httpStatus("http://" + a.addr + "/readyz"); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down: %d", st)
	}
	st, h, body := regGet(t, http.MethodGet, "http://"+a.addr+"/v2/"+f.repo+"/manifests/v1--2.0.2.0", nil)
	if st != http.StatusInternalServerError || h.Get("Docker-Content-Digest") != "" {
		t.Fatalf("new partition with Redis down: %d %v %s", st, h, body)
	}
	fetchByDigest(t, a, f.repo, d)
	// Blobs still stream from the registry, without waiting on Redis.
	layer := f.cells[f.src.record.Allotments[0].Cell()]
	start := time.Now()
	for i := 0; i < 5; i++ {
		if st, _, body := regGet(t, http.MethodGet, "http://"+a.addr+"/v2/"+f.repo+"/blobs/"+layer, nil); st != 200 || sha256Digest(body) != layer {
			t.Fatalf("layer with Redis down: %d", st)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("5 layer GETs with Redis down took %v: every blob waits on Redis", took)
	}

	// Redis back (empty, on the same port): replicas share again.
	redisProc.start(t)
	waitUntil(t, "replica a ready again", nil, func() bool { return httpStatus("http://"+a.addr+"/readyz") == 200 })
	d3 := resolve(t, a, f.repo, "v1--2.0.2.0")
	fetchByDigest(t, b, f.repo, d3)
}

// TestProxyDirStoreRestart restarts a proxy that keeps objects in a
// directory, gracefully and by SIGKILL: clients that resolved a partition
// before still fetch it by digest.
func TestProxyDirStoreRestart(t *testing.T) {
	f := proxyField(t)
	dir := filepath.Join(t.TempDir(), "store")
	px := startProxy(t, env.registry, "-store-dir", dir)
	const selection = "0.0.0.0--1.1.1.1"
	d := resolve(t, px, f.repo, "v1--"+selection)
	m := fetchByDigest(t, px, f.repo, d)
	cfg, _ := manifestLayers(t, m)
	for _, k := range []string{d, cfg} {
		if _, err := os.Stat(filepath.Join(dir, "sha256", strings.TrimPrefix(k, "sha256:"))); err != nil {
			t.Fatalf("directory store lacks %s: %v", k, err)
		}
	}

	px.restart(t) // SIGTERM
	fetchByDigest(t, px, f.repo, d)
	px.kill() // a crash
	px.start(t)
	px.waitReady(t)
	if got := fetchByDigest(t, px, f.repo, d); string(got) != string(m) {
		t.Fatal("the manifest changed across restarts")
	}
	out, got := ctrPullRun(t, px.addr+"/"+f.repo+"@"+d, filesScript)
	if out != f.wantFiles(t, selection) || got != d {
		t.Fatalf("ctr by digest after restarts: %s\n%s\nwant:\n%s", got, out, f.wantFiles(t, selection))
	}
	// The store was read: the hits are on the metrics of the new process.
	_, _, metrics := regGet(t, http.MethodGet, "http://"+px.addr+"/metrics", nil)
	if !strings.Contains(string(metrics), `tdfs_proxy_store_lookups_total{result="hit"}`) {
		t.Fatalf("no store hits after the restart:\n%s", metrics)
	}
}

// pullResult is one partition pull through the proxy.
type pullResult struct {
	sel, digest string
	status      int
	body        string
}

// pullPartition resolves a partition tag (GET), then fetches its config by
// digest and HEADs its last layer, as a client would. A failure anywhere
// returns that status.
func pullPartition(client *http.Client, px, repo, selection string) pullResult {
	r := pullResult{sel: selection}
	get := func(method, u string) (int, http.Header, []byte) {
		req, _ := http.NewRequest(method, u, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err := client.Do(req)
		if err != nil {
			return -1, nil, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return -1, nil, []byte(err.Error())
		}
		return resp.StatusCode, resp.Header, b
	}
	base := "http://" + px + "/v2/" + repo
	st, h, body := get(http.MethodGet, base+"/manifests/v1--"+selection)
	r.status, r.body = st, string(body)
	if st != 200 {
		return r
	}
	r.digest = h.Get("Docker-Content-Digest")
	if sha256Digest(body) != r.digest {
		r.status, r.body = 600, "manifest does not hash to its Docker-Content-Digest"
		return r
	}
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	if json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 {
		r.status, r.body = 600, "unparseable manifest"
		return r
	}
	st, _, cfg := get(http.MethodGet, base+"/blobs/"+m.Config.Digest)
	if st != 200 {
		r.status, r.body = st, string(cfg)
		return r
	}
	if sha256Digest(cfg) != m.Config.Digest {
		r.status, r.body = 600, "config does not hash to its digest"
		return r
	}
	st, lh, _ := get(http.MethodHead, base+"/blobs/"+m.Layers[len(m.Layers)-1].Digest)
	if st != 200 {
		// A HEAD answer has no body: keep what the headers say.
		r.status, r.body = st, "HEAD of a layer: Content-Type "+lh.Get("Content-Type")
	}
	return r
}

// TestProxyConcurrentPullsAndOutage pulls many different selections
// concurrently through the proxy, kills the upstream registry in the
// middle of a run and restarts it on the same port and data directory:
// while it is down every answer is 502 or 504 (never a wrong or cached
// bad one), and afterwards the same digests come back.
func TestProxyConcurrentPullsAndOutage(t *testing.T) {
	f := proxyField(t)
	reg := startRegistry(t, "outage", "")
	crane(t, nil, "copy", f.ref, reg.addr+"/"+f.repo+":v1")
	px := startProxy(t, reg.addr, "-build-timeout", "10s")
	client := &http.Client{Timeout: 60 * time.Second}

	selections := []string{"0.0.0.0", "0.1.0.1", "1.0.1.0", "1.1.1.1", "2.0.2.0", "0.0.1.1", "0.0.0.1--2.0.2.0", "1.0.2.1"}
	want := map[string]string{}
	for _, s := range selections {
		r := pullPartition(client, px.addr, f.repo, s)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", s, r.status, r.body)
		}
		want[s] = r.digest
		_, ls := manifestLayers(t, fetchByDigest(t, px, f.repo, r.digest))
		if !slices.Equal(ls, f.wantLayers(t, s)) {
			t.Fatalf("%s: layers %v, want %v", s, ls, f.wantLayers(t, s))
		}
	}

	// run pulls total selections round-robin with workers goroutines and
	// calls check on each result.
	run := func(workers, total int, pause time.Duration, check func(pullResult)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= total {
						return
					}
					check(pullPartition(client, px.addr, f.repo, selections[i%len(selections)]))
					time.Sleep(pause)
				}
			}()
		}
		wg.Wait()
	}

	// 1. Many concurrent pulls of different selections: all succeed with
	// the digests of the sequential pulls.
	var mu sync.Mutex
	var errs []string
	run(8, 96, 0, func(r pullResult) {
		if r.status != 200 || r.digest != want[r.sel] {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s: %d %s (digest %s, want %s)", r.sel, r.status, r.body, r.digest, want[r.sel]))
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d of 96 concurrent pulls failed:\n%s", len(errs), strings.Join(errs, "\n"))
	}

	// 2. Kill the registry in the middle of a concurrent run.
	var ok, down atomic.Int64
	var killed atomic.Bool
	go func() {
		for ok.Load() < 16 {
			time.Sleep(5 * time.Millisecond)
		}
		reg.kill()
		killed.Store(true)
	}()
	run(6, 120, 20*time.Millisecond, func(r pullResult) {
		switch {
		case r.status == 200 && r.digest == want[r.sel]:
			ok.Add(1)
		case (r.status == 502 || r.status == 504) && (strings.Contains(r.body, "UNAVAILABLE") || r.body == "HEAD of a layer: Content-Type application/json"):
			down.Add(1)
		default:
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s: %d %s (digest %s, want %s, registry killed: %v)", r.sel, r.status, r.body, r.digest, want[r.sel], killed.Load()))
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		t.Fatalf("answers around the outage that are neither right nor 502/504:\n%s", strings.Join(errs, "\n"))
	}
	if !killed.Load() || ok.Load() < 16 || down.Load() == 0 {
		t.Fatalf("the run did not straddle the kill: %d ok, %d down, killed %v", ok.Load(), down.Load(), killed.Load())
	}

	// While it is down: a known selection, a new one, a stored object by
	// digest and a layer are all 502/504 with an OCI error, never 200 or
	// 404.
	base := "http://" + px.addr + "/v2/" + f.repo
	for _, u := range []string{
		base + "/manifests/v1--" + selections[0],
		base + "/manifests/v1--0.0.2.1",
		base + "/manifests/" + want[selections[1]],
		base + "/blobs/" + f.cells[f.src.record.Allotments[0].Cell()],
	} {
		st, h, body := regGet(t, http.MethodGet, u, nil)
		if (st != 502 && st != 504) || !strings.Contains(string(body), "UNAVAILABLE") || h.Get("Docker-Content-Digest") != "" {
			t.Fatalf("GET %s with the registry down: %d %v %s", u, st, h, body)
		}
	}
	if st := httpStatus("http://" + px.addr + "/readyz"); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the registry down: %d", st)
	}

	// 3. Restart the registry on the same port and data: correct service,
	// with the same digests, and the selection that failed while it was
	// down now works.
	reg.start(t)
	reg.waitReady(t)
	run(8, 64, 0, func(r pullResult) {
		if r.status != 200 || r.digest != want[r.sel] {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s: %d %s", r.sel, r.status, r.body))
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		t.Fatalf("after the registry came back:\n%s", strings.Join(errs, "\n"))
	}
	r := pullPartition(client, px.addr, f.repo, "0.0.2.1")
	if r.status != 200 {
		t.Fatalf("new selection after the outage: %d %s", r.status, r.body)
	}
	if _, ls := manifestLayers(t, fetchByDigest(t, px, f.repo, r.digest)); !slices.Equal(ls, f.wantLayers(t, "0.0.2.1")) {
		t.Fatalf("new selection after the outage: layers %v", ls)
	}
	if st := httpStatus("http://" + px.addr + "/readyz"); st != 200 {
		t.Fatalf("/readyz after the registry came back: %d", st)
	}
}
