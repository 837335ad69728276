package partition_test

import (
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
