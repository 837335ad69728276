package partition_test

import (
	"runtime"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/field"
)

var largeGrid = []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}}

// BenchmarkImageLargeConfig partitions an image whose config is just under
// MaxConfigBytes; B/op is what one partition allocates.
func BenchmarkImageLargeConfig(b *testing.B) {
	for _, c := range []struct {
		name string
		pad  partitiontest.Padding
	}{{"label", partitiontest.PadLabel}, {"history", partitiontest.PadHistory}} {
		b.Run(c.name, func(b *testing.B) {
			img := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, 15<<20, c.pad, largeGrid...)
			sel := partitiontest.Selection(b, "0.0.0.1")
			b.ReportAllocs()
			b.SetBytes(int64(len(img.Config)))
			for b.Loop() {
				if _, err := partition.Image(img.Manifest, img.MediaType, img.Config, sel); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// allocated returns the bytes f allocates (runtime.MemStats.TotalAlloc;
// the test runs nothing else meanwhile).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Partitioning an image whose config is at the cap allocates a small
// multiple of the config: at most 4× (about 3× today), wherever the bulk
// of the config is. It was 7.6× with the bulk in a label and 20× with it
// in 245,000 history entries, which is what let 64 concurrent builds take
// the proxy to 7 GB.
func TestImageLargeConfigMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 16 MiB configs")
	}
	for _, c := range []struct {
		name string
		pad  partitiontest.Padding
	}{{"label", partitiontest.PadLabel}, {"history", partitiontest.PadHistory}} {
		t.Run(c.name, func(t *testing.T) {
			img := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, partition.MaxConfigBytes, c.pad, largeGrid...)
			sel := partitiontest.Selection(t, "0.0.0.1")
			var err error
			n := allocated(func() { _, err = partition.Image(img.Manifest, img.MediaType, img.Config, sel) })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes allocated for a %d-byte config (%.1f×)", n, len(img.Config), float64(n)/float64(len(img.Config)))
			if n > 4*uint64(len(img.Config)) {
				t.Errorf("%d bytes allocated, over 4× the %d-byte config", n, len(img.Config))
			}
		})
	}
}
