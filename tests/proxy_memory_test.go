package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/field"
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
	var cells []field.Cell
	for r := range 8 {
		for c := range 8 {
			cells = append(cells, field.Cell{Row: r, Col: c})
		}
	}
	img := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, partition.MaxConfigBytes, partitiontest.PadLabel, cells...)
	pushRaw(t, reg.addr, "big", "v1", img)
	// The bound is the production binary's: the race detector (hack/test's
	// TDFS_PROXY_RACE) multiplies memory, so this proxy is built without it.
	bin, err := testenv.PlainProxyBin(env.root, filepath.Join(env.dir, "bin-plain"))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxyBin(t, bin, reg.addr)

	statuses := make([]int, len(cells))
	retryAfter := make([]string, len(cells))
	var wg sync.WaitGroup
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Minute}
	for i, c := range cells {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v2/big/manifests/v1--%d.%d.%d.%d", p.addr, c.Row, c.Col, c.Row, c.Col), nil)
			req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			statuses[i], retryAfter[i] = resp.StatusCode, resp.Header.Get("Retry-After")
			if resp.StatusCode == http.StatusOK && digest.FromBytes(body.Bytes()).String() != resp.Header.Get("Docker-Content-Digest") {
				t.Errorf("request %d: the body does not match Docker-Content-Digest", i)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	peak, err := p.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}

	counts := map[int]int{}
	for i, s := range statuses {
		counts[s]++
		switch s {
		case http.StatusOK:
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			if n, err := strconv.Atoi(retryAfter[i]); err != nil || n < 1 {
				t.Errorf("request %d: %d without a Retry-After (%q)", i, s, retryAfter[i])
			}
		default:
			t.Errorf("request %d: status %d", i, s)
		}
	}
	t.Logf("64 distinct partitions of an image with a %d-byte config: %v in %v; proxy peak RSS %.0f MiB", len(img.Config), counts, elapsed.Round(time.Millisecond), float64(peak)/(1<<20))
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

// pushRaw pushes img's blobs and manifest to the registry at addr
// (host:port, plain HTTP) as repo:tag, with the distribution API's
// two-step upload.
func pushRaw(t *testing.T, addr, repo, tag string, img *partitiontest.Image) {
	t.Helper()
	base := "http://" + addr
	for _, b := range img.Blobs() {
		resp, err := http.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/", base, repo), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload: %s", resp.Status)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		loc = (&url.URL{Scheme: "http", Host: addr}).ResolveReference(loc)
		q := loc.Query()
		q.Set("digest", digest.FromBytes(b).String())
		loc.RawQuery = q.Encode()
		put(t, loc.String(), "application/octet-stream", b)
	}
	put(t, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag), img.MediaType, img.Manifest)
}

func put(t *testing.T, u, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %s", u, resp.Status)
	}
}
