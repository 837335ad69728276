package tests

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// proxyPeakRSSBound is the documented bound (docs/proxy.md) of the proxy's
// peak RSS under TestProxyMemoryUnderLoad's load with default flags.
const proxyPeakRSSBound = 512 << 20

// 64 concurrent requests for 64 distinct partitions of an image whose
// config is at the default cap (16 MiB): with the default synthesis limit
// and queue, every request ends in 200 or 503 with Retry-After (none in a
// 5xx from exhaustion), and the proxy's peak RSS stays under the bound.
// Unbounded, each synthesis cost about 115 MB and 64 of them took the
// proxy to 5.9 GB.
func TestProxyMemoryUnderLoad(t *testing.T) {
	reg := startRegistry(t, "memory", "")
	img, cells := testenv.LargeConfigImage()
	if err := testenv.PushImage(reg.addr, "big", "v1", img); err != nil {
		t.Fatal(err)
	}
	// The bound is the production binary's: the race detector (hack/test's
	// TDFS_PROXY_RACE) multiplies memory, so this proxy is built without it.
	bin, err := testenv.PlainProxyBin(env.root, filepath.Join(env.dir, "bin-plain"))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxyBin(t, bin, reg.addr)

	res := testenv.SelectionLoad(p.addr, "big", "v1", cells)
	peak, err := p.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range res.Problems() {
		t.Error(problem)
	}
	counts := res.Counts()
	t.Logf("64 distinct partitions of an image with a %d-byte config: %v in %v; proxy peak RSS %.0f MiB", len(img.Config), counts, res.Elapsed.Round(time.Millisecond), float64(peak)/(1<<20))
	if counts[http.StatusOK] == 0 {
		t.Errorf("no request succeeded")
	}
	if peak > proxyPeakRSSBound {
		t.Errorf("proxy peak RSS %d MiB, over the %d MiB bound", peak>>20, proxyPeakRSSBound>>20)
	}
	if log := p.logText(); strings.Contains(log, "panic") {
		t.Errorf("proxy log:\n%s", log)
	}
}
