// Package exporter holds image rewriting: the packages below it turn one
// image's manifests and configs into another's, deterministically, and never
// build anything. The name is historical; there is no BuildKit exporter here.
//
//   - exporter/partition cuts a partition out of one of our field images
//     (allotments are manifest layers, the config carries the field record).
//   - exporter/tdfs is the reference 2DFS format (the field layer): its
//     codec, the conversion of our images into it, and its partitions.
//   - exporter/image reads an image through a Source and runs partition,
//     convert and inspect for both formats: the index-or-manifest switch,
//     attestations and children are handled there once.
//   - exporter/remote and exporter/layout are Sources over a registry and an
//     OCI layout directory.
//
// Nothing here imports BuildKit: the registry proxy imports these packages.
package exporter
