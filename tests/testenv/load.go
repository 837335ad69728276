package testenv

// The distinct-selection load on 2dfs-proxy (issue 11): an image whose
// config is at the default cap, and 64 concurrent requests each for a
// different partition of it. TestProxyMemoryUnderLoad and the benchmark's
// proxy experiment run the same load.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/field"
)

// LargeConfigImage is an 8×8 field (64 cells, one allotment each) whose
// config is partition.MaxConfigBytes, the proxy's default cap: the image
// of the memory load. It is the same for every call.
func LargeConfigImage() (*partitiontest.Image, []field.Cell) {
	var cells []field.Cell
	for r := range 8 {
		for c := range 8 {
			cells = append(cells, field.Cell{Row: r, Col: c})
		}
	}
	return partitiontest.Large(ocispec.MediaTypeImageManifest, 1, partition.MaxConfigBytes, partitiontest.PadLabel, cells...), cells
}

// PushImage pushes img's blobs and manifest to the registry at addr
// (host:port, plain HTTP) as repo:tag, with the distribution API's
// two-step upload.
func PushImage(addr, repo, tag string, img *partitiontest.Image) error {
	base := "http://" + addr
	for _, b := range img.Blobs() {
		resp, err := http.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/", base, repo), "", nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("start upload to %s/%s: %s", addr, repo, resp.Status)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			return fmt.Errorf("upload Location from %s/%s: %w", addr, repo, err)
		}
		loc = (&url.URL{Scheme: "http", Host: addr}).ResolveReference(loc)
		q := loc.Query()
		q.Set("digest", digest.FromBytes(b).String())
		loc.RawQuery = q.Encode()
		if err := put(loc.String(), "application/octet-stream", b); err != nil {
			return err
		}
	}
	return put(fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag), img.MediaType, img.Manifest)
}

func put(u, contentType string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT %s: %s", u, resp.Status)
	}
	return nil
}

// LoadResult is what each request of SelectionLoad ended in.
type LoadResult struct {
	Status     []int    // 0 when the request failed (Errs says why)
	RetryAfter []string // the Retry-After header
	Errs       []error  // transport errors, and 200s whose body does not match their digest
	Elapsed    time.Duration
}

// Counts is the number of requests per status.
func (r LoadResult) Counts() map[int]int {
	counts := map[int]int{}
	for _, s := range r.Status {
		counts[s]++
	}
	return counts
}

// Problems lists every request that did not end in a 200 or in a 503/429
// with a Retry-After of at least one second: what the load must not see.
func (r LoadResult) Problems() []string {
	var out []string
	for i, s := range r.Status {
		switch {
		case r.Errs[i] != nil:
			out = append(out, fmt.Sprintf("request %d: %v", i, r.Errs[i]))
		case s == http.StatusOK:
		case s == http.StatusServiceUnavailable || s == http.StatusTooManyRequests:
			if n, err := strconv.Atoi(r.RetryAfter[i]); err != nil || n < 1 {
				out = append(out, fmt.Sprintf("request %d: %d without a Retry-After (%q)", i, s, r.RetryAfter[i]))
			}
		default:
			out = append(out, fmt.Sprintf("request %d: status %d", i, s))
		}
	}
	return out
}

// SelectionLoad sends, all at once, one GET per cell for the partition of
// that cell alone (repo:tag--r.c.r.c) to the proxy at addr (host:port).
func SelectionLoad(addr, repo, tag string, cells []field.Cell) LoadResult {
	res := LoadResult{Status: make([]int, len(cells)), RetryAfter: make([]string, len(cells)), Errs: make([]error, len(cells))}
	client := &http.Client{Timeout: 5 * time.Minute}
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cells {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v2/%s/manifests/%s--%d.%d.%d.%d", addr, repo, tag, c.Row, c.Col, c.Row, c.Col), nil)
			req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
			resp, err := client.Do(req)
			if err != nil {
				res.Errs[i] = err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			res.Status[i], res.RetryAfter[i] = resp.StatusCode, resp.Header.Get("Retry-After")
			switch {
			case err != nil:
				res.Errs[i] = err
			case resp.StatusCode == http.StatusOK && digest.FromBytes(body).String() != resp.Header.Get("Docker-Content-Digest"):
				res.Errs[i] = fmt.Errorf("the body does not match Docker-Content-Digest %s", resp.Header.Get("Docker-Content-Digest"))
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
