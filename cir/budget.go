package cir

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// DefaultMaxLayers is the layer budget of an assembled image: base,
// dependency and application layers together. Docker's overlay2 driver
// mounts at most 128 layers; 100 leaves 28 for the images a Dockerfile
// builds FROM the assembled one (docs/cir.md, "Layer budget").
const DefaultMaxLayers = 100

// maxBuckets is the most shared layers the small packages of an apt closure
// are hashed into. Fixed (not derived from the closure), so that a small
// package lands in the same bucket in every application.
const maxBuckets = 16

// minThreshold is the first size, in bytes, that makes a package a layer of
// its own when the closure is over the budget; the threshold doubles from
// there until the closure fits.
const minThreshold = 1 << 10

// LayerPlan says how an apt closure is laid out in layers.
type LayerPlan struct {
	// Groups are the layers, each the indices of its packages in the
	// closure (sorted by name), in stacking order (orderGroups): largest
	// first.
	Groups [][]int
	// Threshold is the size from which a package has a layer of its own;
	// 0 when every package has one (the closure fits the budget).
	Threshold int64
	// Buckets is the number of buckets the smaller packages were hashed
	// into; 0 when every package has its own layer.
	Buckets int
}

// Grouped says whether some layer holds more than one package.
func (p LayerPlan) Grouped() bool { return p.Threshold > 0 }

// PlanLayers lays an apt closure (sorted by name) out in at most slots
// layers. Within the budget, every package is a layer of its own. Over it,
// the rule keeps what two applications share in shared layers as far as a
// rule that sees one closure can:
//
//   - a package of at least Threshold bytes stays a layer of its own, with the
//     same cache key as when nothing is grouped: the large packages, which
//     hold most of the bytes, are the same blobs in every application;
//   - the smaller ones go into one of Buckets shared layers by a hash of
//     their source package's name, so a bucket depends on no other
//     package's name and the packages of one source (libgfortran5 and
//     libquadmath0 of gcc-12) stay together;
//   - Threshold is the smallest power of two from 1 KiB up with which the
//     layers fit; Buckets is the largest power of two up to 16 and half the
//     slots. Both move in steps, so two closures of similar size pick the
//     same ones.
func PlanLayers(debs []Deb, slots int) (LayerPlan, error) {
	if len(debs) <= slots {
		plan := LayerPlan{}
		for i := range debs {
			plan.Groups = append(plan.Groups, []int{i})
		}
		orderGroups(plan.Groups, debs)
		return plan, nil
	}
	if slots < 1 {
		return LayerPlan{}, fmt.Errorf("no layer is left for the %d apt packages", len(debs))
	}
	buckets := 1
	for buckets*2 <= min(maxBuckets, slots/2) {
		buckets *= 2
	}
	var largest int64
	for _, d := range debs {
		largest = max(largest, d.Size)
	}
	for t := int64(minThreshold); ; t *= 2 {
		plan := layout(debs, t, buckets)
		// Past the largest package every package is in a bucket, and
		// the buckets fit: the loop ends there at the latest.
		if len(plan.Groups) <= slots || t > largest {
			return plan, nil
		}
	}
}

func layout(debs []Deb, threshold int64, buckets int) LayerPlan {
	plan := LayerPlan{Threshold: threshold, Buckets: buckets}
	byBucket := map[int][]int{}
	for i, d := range debs {
		if d.Size >= threshold {
			plan.Groups = append(plan.Groups, []int{i})
			continue
		}
		b := bucketOf(SourceOf(d), buckets)
		byBucket[b] = append(byBucket[b], i)
	}
	for _, g := range byBucket {
		plan.Groups = append(plan.Groups, g)
	}
	orderGroups(plan.Groups, debs)
	return plan
}

// orderGroups puts the layers in stacking order: by bytes (the .debs'
// sizes), largest first, ties by their first package's name. A runtime
// reuses an image's unpacked layers only as a common prefix of another
// image's stack (containerd names a snapshot by the chain of every layer
// under it), and everything above the first layer two applications do
// not share is unpacked again. Large packages (the interpreter's
// libraries, BLAS, numpy, scipy) are the ones applications share, and the
// ones that cost the most to unpack again; the small ones on top (an
// application's own leaf packages) are cheap to re-apply. Sizes are the
// packages' own, so the order is the same in every application.
// (hack/cir-budget measures the shared prefix; docs/cir.md.)
func orderGroups(groups [][]int, debs []Deb) {
	size := func(g []int) int64 {
		var n int64
		for _, i := range g {
			n += debs[i].Size
		}
		return n
	}
	slices.SortStableFunc(groups, func(a, b []int) int {
		if sa, sb := size(a), size(b); sa != sb {
			if sa > sb {
				return -1
			}
			return 1
		}
		return strings.Compare(debs[a[0]].Name, debs[b[0]].Name)
	})
}

func bucketOf(source string, buckets int) int {
	sum := sha256.Sum256([]byte(source))
	return int(binary.BigEndian.Uint32(sum[:4]) % uint32(buckets))
}

// SourceOf is the Debian source package of a .deb, read from its URL: an
// archive keeps a package in pool/COMPONENT/PREFIX/SOURCE/. A package from
// a flat repository is its own source.
func SourceOf(d Deb) string {
	u, err := url.Parse(d.URL)
	if err != nil {
		return d.Name
	}
	parts := strings.Split(u.Path, "/")
	for i, p := range parts {
		if p == "pool" && i+4 < len(parts) {
			return parts[i+3]
		}
	}
	return d.Name
}
