package registryproxy

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/field"
)

// staticUpstream serves one image from memory as repository m, tag v1: a
// registry that costs the benchmark nothing, so what it measures is the
// proxy.
func staticUpstream(img *partitiontest.Image) http.Handler {
	blobs := map[string][]byte{}
	for _, b := range img.Blobs() {
		blobs["/v2/m/blobs/"+digest.FromBytes(b).String()] = b
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch p := r.URL.Path; {
		case p == "/v2/m/manifests/v1" || p == "/v2/m/manifests/"+img.Digest().String():
			body = img.Manifest
			w.Header().Set("Content-Type", img.MediaType)
			w.Header().Set("Docker-Content-Digest", img.Digest().String())
		case blobs[p] != nil:
			body = blobs[p]
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// largeCells is a 4 × 4 field: selections of it are distinct partitions.
func largeCells() []field.Cell {
	var cells []field.Cell
	for r := range 4 {
		for c := range 4 {
			cells = append(cells, field.Cell{Row: r, Col: c})
		}
	}
	return cells
}

// BenchmarkSynthesizeLargeConfig builds partitions of an image whose config
// is 15 MiB, just under the config cap: B/op is what one synthesis
// allocates, from the upstream GETs to the stored result.
func BenchmarkSynthesizeLargeConfig(b *testing.B) {
	for _, c := range []struct {
		name string
		pad  partitiontest.Padding
	}{{"label", partitiontest.PadLabel}, {"history", partitiontest.PadHistory}} {
		b.Run(c.name, func(b *testing.B) {
			img := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, 15<<20, c.pad, largeCells()...)
			up := httptest.NewServer(staticUpstream(img))
			defer up.Close()
			p, err := New(Options{
				Upstream:       mustURL(up.URL),
				Store:          NewMemoryStore(1 << 20), // keeps manifests, not the 15 MiB configs
				Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
				PartitionReuse: -1,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(img.Config)))
			i := 0
			for b.Loop() {
				// A distinct selection each time: no reuse, no join.
				r, c := i/4%4, i%4
				i++
				req := httptest.NewRequest(http.MethodHead, fmt.Sprintf("/v2/m/manifests/v1--%d.%d.%d.%d", r, c, r, c), nil)
				w := httptest.NewRecorder()
				p.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", req.URL.Path, w.Code, strings.TrimSpace(w.Body.String()))
				}
			}
		})
	}
}
