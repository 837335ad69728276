package descriptor

import "fmt"

// MaxImageDescriptors is containerd's cap on the descriptors one walk of an
// image visits (images.Walk and images.Dispatch, maxReferences): the index,
// and for each platform its manifest, config and layers. BuildKit pushes and
// exports images with these walks, so a larger image fails at the very end
// of the build with "too many descriptors (limit 10000)".
const MaxImageDescriptors = 10_000

// MaxAllotments is the most allotments a descriptor may declare: just under
// MaxImageDescriptors, leaving room for the base image's layers, the
// manifest, config and index, and BuildKit's attestation manifests. It also
// keeps the LLB definition (about 450 bytes per allotment) far below
// BuildKit's 16 MiB gRPC message limit, and the build near 10 minutes here
// (docs/benchmarks.md). A multi-platform build allows fewer: see
// CheckImageDescriptors.
const MaxAllotments = 9_000

// ImageDescriptors counts the descriptors of the image a build makes:
// platforms × (base layers + allotments + manifest + config), plus the index
// of a multi-platform image.
func ImageDescriptors(platforms, baseLayers, allotments int) int {
	n := platforms * (baseLayers + allotments + 2)
	if platforms > 1 {
		n++
	}
	return n
}

// CheckLimits refuses a descriptor with more than MaxAllotments allotments,
// pointing at the first one past the limit, before any work is done.
func (d *Descriptor) CheckLimits() error {
	if len(d.Allotments) <= MaxAllotments {
		return nil
	}
	a := d.Allotments[MaxAllotments]
	return &Error{File: d.Filename, Pos: a.Pos, Allotment: a.Index, Cell: &a.Cell,
		Msg: fmt.Sprintf("the descriptor has %d allotments, over the maximum of %d (BuildKit cannot push or export an image of more than %d descriptors); split the field into several images",
			len(d.Allotments), MaxAllotments, MaxImageDescriptors)}
}

// CheckImageDescriptors refuses a build whose image would pass
// MaxImageDescriptors, which depends on the platforms and the base image's
// layers: the frontend checks it once it has resolved the base, and with
// baseLayers 0 before that.
func (d *Descriptor) CheckImageDescriptors(platforms, baseLayers int) error {
	n := ImageDescriptors(platforms, baseLayers, len(d.Allotments))
	if n <= MaxImageDescriptors {
		return nil
	}
	formula, index := "platforms × (base layers + allotments + 2)", 0
	if platforms > 1 {
		formula, index = formula+" + 1 index", 1
	}
	e := &Error{File: d.Filename, Pos: d.BasePos, Allotment: -1,
		Msg: fmt.Sprintf("%d allotments on a base of %d layers for %d platform(s) make an image of %d descriptors (%s), over BuildKit's limit of %d; build fewer platforms at once or split the field",
			len(d.Allotments), baseLayers, platforms, n, formula, MaxImageDescriptors)}
	if baseLayers == 0 && len(d.Allotments) > 0 {
		// Nothing to blame but the allotments: point at the first one
		// the limit leaves no room for.
		fit := (MaxImageDescriptors-index)/platforms - 2
		a := d.Allotments[max(0, min(len(d.Allotments)-1, fit))]
		e.Pos, e.Allotment, e.Cell = a.Pos, a.Index, &a.Cell
	}
	return e
}
