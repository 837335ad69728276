package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/tdfs-kit/tdfs/direct/layer"
)

// The read counts come from the direct engine's last line; a log without it
// is an error, not "nothing read".
func TestDirectReads(t *testing.T) {
	out := "[2dfs] engine: direct (asked for)\n[2dfs] direct: 3 allotments read, 5 unread (stat cache, blob in the registry)\nsha256:abc\n"
	if r, u, err := directReads(out); err != nil || r != 3 || u != 5 {
		t.Fatalf("directReads = %d, %d, %v; want 3, 5", r, u, err)
	}
	if _, _, err := directReads("#5 [2dfs 0,0] copy /a\n#5 DONE 0.2s\n"); err == nil {
		t.Fatal("BuildKit progress counted as a direct build that read nothing")
	}
}

// The direct rows compare against COPY --link and the floor per run, and
// judge the no-op on its median alone.
func TestDirectRows(t *testing.T) {
	b := &bench{res: &Results{}, started: time.Now()}
	times := map[string][]float64{vDirect: {1, 2, 1.5}, vLinkZ: {3, 4, 3}, vTDFS: {2, 3, 2}}
	noop := map[string][]float64{vDirect: {0.2, 0.05, 0.06}, vTDFS: {0.2, 0.2, 0.3}}
	floors := map[string][]float64{"floor": {0.9, 1.5, 1.0}, "floor-zstd": {1.0, 1.6, 1.4}}
	b.directColdRows(times, noop, floors, []string{"4 read", "0 read"}, []float64{40})
	link, fl, nt := b.row("cold/direct-link"), b.row("cold/direct-floor"), b.row("noop/direct-time")
	if link == nil || fl == nil || nt == nil || b.row("noop/direct") == nil || b.row("cold/direct-buildkit") == nil {
		t.Fatalf("rows missing: %+v", b.res.Rows)
	}
	if r := b.row("cold/direct-rss"); r == nil || r.Unit != "MB" || r.Ours[0] != 40 {
		t.Fatalf("peak memory row = %+v", r)
	}
	// per run 3, 2, 2: median 2; medians 3 / 1.5 = 2: both miss ≥2.5.
	if link.RatioOfMedians != 2 || link.Met == nil || *link.Met {
		t.Fatalf("direct vs link = %+v", link)
	}
	// per run 1.11, 1.33, 1.5; medians 1.5 / 1.0 = 1.5: both miss ≤1.3.
	if fl.RatioKind != Relative || fl.RatioOfMedians != 1.5 || fl.Met == nil || *fl.Met {
		t.Fatalf("direct vs floor = %+v", fl)
	}
	// The compressing floor: per run 1, 1.25, 1.07; medians 1.5 / 1.4.
	if fz := b.row("cold/direct-floor-zstd"); fz == nil || fz.Settings != Equal || fz.PeerVals[1] != 1.6 || fz.Met == nil || !*fz.Met {
		t.Fatalf("direct vs compressing floor = %+v", fz)
	}
	// median of 0.2, 0.05, 0.06 is 0.06 < 0.1 although the first run took 0.2.
	if nt.Met == nil || !*nt.Met {
		t.Fatalf("no-op time = %+v", nt)
	}
	slow := directRows(times, map[string][]float64{vDirect: {0.2, 0.15}}, floors)
	for _, r := range slow {
		if r.Key == "noop/direct-time" && (r.Met == nil || *r.Met) {
			t.Fatalf("a 0.175 s no-op met the 100 ms target: %+v", r)
		}
	}
	// Nothing measured: no rows (experiment 1 run without the direct engine).
	b2 := &bench{res: &Results{}, started: time.Now()}
	b2.directColdRows(map[string][]float64{}, nil, nil, nil, nil)
	if len(b2.res.Rows) != 0 {
		t.Fatalf("rows without direct figures: %+v", b2.res.Rows)
	}
}

// The floor's uploads land in the registry as the blobs they are: a real
// (in-process) registry serves each one back by digest from the new
// repository, and a wrong digest is refused, not timed as an upload.
func TestUploadBlobs(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	var blobs []floorBlob
	for i := range 5 {
		data := bytes.Repeat([]byte{byte(i)}, 1<<16+i)
		sum := sha256.Sum256(data)
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, floorBlob{digest: fmt.Sprintf("sha256:%x", sum), size: int64(len(data)), path: path})
	}
	if _, err := uploadBlobs(context.Background(), host, "bench/floor", blobs, 2, nil); err != nil {
		t.Fatal(err)
	}
	for _, bl := range blobs {
		resp, err := http.Head(srv.URL + "/v2/bench/floor/blobs/" + bl.digest)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != bl.size {
			t.Fatalf("HEAD %s: %s, %d bytes; want 200, %d", bl.digest, resp.Status, resp.ContentLength, bl.size)
		}
	}
	bad := blobs[0]
	bad.digest = blobs[1].digest
	if _, err := uploadBlobs(context.Background(), host, "bench/other", []floorBlob{bad}, 1, nil); err == nil {
		t.Fatal("a blob uploaded under another blob's digest was accepted")
	}
}

// The compressing floor sends each blob compressed again from its layer
// and lands the same blob; a blob made with other settings than the
// floor's fails the upload rather than being timed.
func TestUploadBlobsCompressing(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	comp, err := layer.ParseCompression("zstd", directLevel)
	if err != nil {
		t.Fatal(err)
	}
	other, err := layer.ParseCompression("zstd", 9)
	if err != nil {
		t.Fatal(err)
	}
	blob := func(name string, c layer.Compression) floorBlob {
		var buf bytes.Buffer
		w, err := layer.Recompress(context.Background(), &buf, strings.NewReader(strings.Repeat("weights "+name, 1<<14)), c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return floorBlob{digest: w.Digest.String(), size: w.Size, path: path}
	}
	blobs, err := untar([]floorBlob{blob("a", comp), blob("b", comp)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uploadBlobs(context.Background(), host, "bench/floor-zstd", blobs, 2, &comp); err != nil {
		t.Fatal(err)
	}
	for _, bl := range blobs {
		resp, err := http.Get(srv.URL + "/v2/bench/floor-zstd/blobs/" + bl.digest)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want, _ := os.ReadFile(bl.path)
		if !bytes.Equal(got, want) {
			t.Fatalf("blob %s: the registry holds %d other bytes", bl.digest, len(got))
		}
	}
	odd, err := untar([]floorBlob{blob("c", other)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uploadBlobs(context.Background(), host, "bench/floor-odd", odd, 1, &comp); err == nil {
		t.Fatal("a blob of level 9 was compressed again at level 1 and the upload succeeded")
	}
}

// rssWrap runs the command, passes its exit code on and writes its peak
// memory, which for a shell running true is small and positive.
func TestRSSWrap(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rss")
	if code := rssWrap(file, []string{"sh", "-c", "exit 3"}); code != 3 {
		t.Fatalf("exit code = %d, want 3", code)
	}
	dt, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	kib, err := strconv.ParseInt(string(dt), 10, 64)
	if err != nil || kib <= 0 || kib > 1<<20 {
		t.Fatalf("peak memory of sh = %q KiB (%v)", dt, err)
	}
}
