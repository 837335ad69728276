package tests

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A node deploying with --cache-from a registry dependency cache takes the
// .deb layers and the alternatives layer from the cache: it fetches no
// .deb from the apt repository. (The alternatives step's links used to be
// read from a report output that no --cache-to exports, so the fresh node
// ran the step again and fetched every .deb of the closure; hack/bench
// -cir's case (c) fetched all 77 of a scikit-learn app.)
func TestCIRDeployAptCacheFrom(t *testing.T) {
	repoDir := t.TempDir()
	deb(t, repoDir, "cachedep-a", "1.0", "amd64", "", map[string]string{
		"usr/bin/cachedep-a": "#!/bin/sh\necho cachedep\n",
		"DEBIAN/postinst":    "#!/bin/sh\nupdate-alternatives --install /usr/bin/cachedep cachedep /usr/bin/cachedep-a 10\n",
	})
	upstream, err := url.Parse(aptRepo(t, repoDir))
	if err != nil {
		t.Fatal(err)
	}
	// The repository behind a proxy that counts .deb fetches.
	var debs atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(upstream)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".deb") {
			debs.Add(1)
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	base := baseWithSources(t, "aptcache", "deb [trusted=yes] http://"+l.Addr().String()+"/ ./\n")

	ref := env.registry + "/cir/aptcached:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"cachedep-a"}}), "-t", ref, "--push")
	cache := "type=registry,ref=" + env.registry + "/cir/aptdepcache:v1"
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-a", "--push", "--cache-to", cache+",mode=max"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	first := debs.Load()
	if first < 1 {
		t.Fatalf("the first deploy fetched no .deb")
	}
	fresh := extraBuildkitd(t, "cirfreshapt")
	out, err := tryCmd("", filepath.Join(env.bin, "2dfs"), "deploy", "--addr", fresh, "--progress", "plain", "--insecure", ref, "--platform", "linux/amd64", "-t", ref+"-b", "--push", "--cache-from", cache)
	if err != nil {
		t.Fatalf("deploy on a fresh buildkitd: %v\n%s", err, out)
	}
	if n := debs.Load() - first; n != 0 {
		t.Errorf("the fresh buildkitd fetched %d .debs from the repository, want none (all from the cache):\n%s", n, out)
	}
	a, _ := remoteImage(t, ref+"-a").Digest()
	b, _ := remoteImage(t, ref+"-b").Digest()
	if a != b {
		t.Errorf("the cached deploy made %s, the first %s", b, a)
	}
}
