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

// LayerPlan says how an apt closure, or the wheels of a pip closure, is
// laid out in layers.
type LayerPlan struct {
	// Groups are the layers, each the indices of its packages in the
	// closure (sorted by name), in stacking order (orderGroups): by their
	// first member's name.
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
	p, err := PlanClosure(debs, nil, slots)
	return p.Apt, err
}

// ClosurePlan says how a whole closure, apt packages and wheels, is laid
// out in layers: Apt groups indices into the packages, Wheels into the
// wheels (each sorted by name). The two kinds never share a layer (they are
// unpacked differently and sit on rows of their own), but they share the
// budget and the threshold.
type ClosurePlan struct {
	Apt    LayerPlan
	Wheels LayerPlan
}

// Grouped says whether some layer holds more than one package or wheel.
func (p ClosurePlan) Grouped() bool { return p.Apt.Grouped() || p.Wheels.Grouped() }

// Layers is the number of layers of the plan.
func (p ClosurePlan) Layers() int { return len(p.Apt.Groups) + len(p.Wheels.Groups) }

// PlanClosure lays an apt closure and a pip closure (each sorted by name)
// out in at most slots layers, by PlanLayers' rule applied to both at once:
// within the budget every package and every wheel is a layer of its own;
// over it, one threshold for both (a .deb's or a wheel's size as fetched),
// the small packages hashed by source package into their buckets, the
// small wheels by normalized project name into theirs. Each kind that has
// members gets the largest power of two up to 16 and half its share of the
// slots (the slots split evenly between the kinds present) as buckets: 16
// each with the default budget, as for an apt closure alone.
func PlanClosure(debs []Deb, wheels []Wheel, slots int) (ClosurePlan, error) {
	apt := make([]member, len(debs))
	for i, d := range debs {
		apt[i] = member{size: d.Size, key: SourceOf(d)}
	}
	whl := make([]member, len(wheels))
	for i, w := range wheels {
		whl[i] = member{size: w.Size, key: w.Name}
	}
	if len(debs)+len(wheels) <= slots {
		return ClosurePlan{Apt: own(apt), Wheels: own(whl)}, nil
	}
	kinds := 0
	for _, n := range []int{len(debs), len(wheels)} {
		if n > 0 {
			kinds++
		}
	}
	if slots < kinds {
		return ClosurePlan{}, &NoRoomError{Debs: len(debs), Wheels: len(wheels), Slots: slots}
	}
	buckets := 1
	for buckets*2 <= min(maxBuckets, slots/2/kinds) {
		buckets *= 2
	}
	var largest int64
	for _, m := range append(slices.Clip(apt), whl...) {
		largest = max(largest, m.size)
	}
	for t := int64(minThreshold); ; t *= 2 {
		plan := ClosurePlan{Apt: layout(apt, t, buckets), Wheels: layout(whl, t, buckets)}
		// Past the largest member every one is in a bucket, and the
		// buckets fit (at most half the slots): the loop ends there at
		// the latest.
		if plan.Layers() <= slots || t > largest {
			return plan, nil
		}
	}
}

// NoRoomError is a budget that leaves too few layers for the closure: none,
// or one for both kinds.
type NoRoomError struct {
	Debs, Wheels, Slots int
}

func (e *NoRoomError) Error() string { return "the layer budget leaves " + e.Left() }

// Left says what the budget leaves for what: "no layer for the 6 apt
// packages", "1 layer for the 6 apt packages and the 40 wheels, which need
// one each".
func (e *NoRoomError) Left() string {
	var what string
	switch {
	case e.Wheels == 0:
		what = fmt.Sprintf("the %d apt packages", e.Debs)
	case e.Debs == 0:
		what = fmt.Sprintf("the %d wheels", e.Wheels)
	default:
		what = fmt.Sprintf("the %d apt packages and the %d wheels", e.Debs, e.Wheels)
	}
	if e.Slots < 1 {
		return "no layer for " + what
	}
	return fmt.Sprintf("%d layer for %s, which need one each", e.Slots, what)
}

// member is what the rule sees of a package or a wheel: its size and the
// key its bucket is hashed from.
type member struct {
	size int64
	key  string
}

func own(members []member) LayerPlan {
	plan := LayerPlan{}
	for i := range members {
		plan.Groups = append(plan.Groups, []int{i})
	}
	orderGroups(plan.Groups)
	return plan
}

func layout(members []member, threshold int64, buckets int) LayerPlan {
	if len(members) == 0 {
		return LayerPlan{}
	}
	plan := LayerPlan{Threshold: threshold, Buckets: buckets}
	byBucket := map[int][]int{}
	for i, m := range members {
		if m.size >= threshold {
			plan.Groups = append(plan.Groups, []int{i})
			continue
		}
		b := bucketOf(m.key, buckets)
		byBucket[b] = append(byBucket[b], i)
	}
	for _, g := range byBucket {
		plan.Groups = append(plan.Groups, g)
	}
	orderGroups(plan.Groups)
	return plan
}

// orderGroups puts the layers in stacking order: by their first member's
// name (indices are in name order). A runtime reuses an image's unpacked
// layers only as a common prefix of another image's stack (containerd names
// a snapshot by the chain of every layer under it) and applies every layer
// above the first one two applications do not share again. Stacking the
// largest packages first keeps more of the shared bytes in that prefix
// (hack/cir-budget: 62 % -> 71 % for the benchmark's pair), but moves the
// first difference down (the pair's 35 re-applied layers became 66), and
// the node paid for the layers more than it saved in bytes: on a node
// holding application b, the unpack of a took 3.5-4.2 s by name and
// 4.3-7.4 s largest first, and 2.6-4.9 s against 3.6-5.9 s in a second
// A/B with the page cache written out before each deploy (3 interleaved
// runs each; docs/cir.md, "Stacking order").
func orderGroups(groups [][]int) {
	slices.SortFunc(groups, func(a, b []int) int { return a[0] - b[0] })
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
