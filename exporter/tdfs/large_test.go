package tdfs_test

import (
	"runtime"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// BenchmarkPartitionLargeConfig partitions a reference-format image whose
// config is about 15 MiB; B/op is what one partition allocates.
func BenchmarkPartitionLargeConfig(b *testing.B) {
	cells := []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}}
	for _, c := range []struct {
		name string
		pad  partitiontest.Padding
	}{{"label", partitiontest.PadLabel}, {"history", partitiontest.PadHistory}} {
		b.Run(c.name, func(b *testing.B) {
			img := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, 15<<20, c.pad, cells...)
			ref, err := tdfs.FromImage(img.Manifest, "", img.Config)
			if err != nil {
				b.Fatal(err)
			}
			sel := partitiontest.Selection(b, "0.0.0.1")
			size := func(digest.Digest) (int64, error) { return 10, nil }
			b.ReportAllocs()
			b.SetBytes(int64(len(ref.Config)))
			for b.Loop() {
				if _, err := tdfs.Partition(ref.Manifest, ref.FieldBlob, ref.Config, sel, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Partitioning a reference-format image whose config is near the cap
// allocates a small multiple of the config: at most 6× (5× with the bulk
// in a label, 2.5× in history entries). It was 7× and 30×.
func TestPartitionLargeConfigMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 15 MiB configs")
	}
	cells := []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}}
	for _, c := range []struct {
		name string
		pad  partitiontest.Padding
	}{{"label", partitiontest.PadLabel}, {"history", partitiontest.PadHistory}} {
		t.Run(c.name, func(t *testing.T) {
			img := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, 15<<20, c.pad, cells...)
			ref, err := tdfs.FromImage(img.Manifest, "", img.Config)
			if err != nil {
				t.Fatal(err)
			}
			sel := partitiontest.Selection(t, "0.0.0.1")
			size := func(digest.Digest) (int64, error) { return 10, nil }
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err = tdfs.Partition(ref.Manifest, ref.FieldBlob, ref.Config, sel, size)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			n := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes allocated for a %d-byte config (%.1f×)", n, len(ref.Config), float64(n)/float64(len(ref.Config)))
			if n > 6*uint64(len(ref.Config)) {
				t.Errorf("%d bytes allocated, over 6× the %d-byte config", n, len(ref.Config))
			}
		})
	}
}
