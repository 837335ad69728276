package tdfs_test

import (
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
