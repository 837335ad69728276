package frontend

import (
	"context"
	"errors"
	"fmt"

	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// budgetPlan is the closure laid out within the layer budget: the layers of
// the packages and of the wheels, their groups (indices into the debs and
// the wheels) and the warnings to show.
type budgetPlan struct {
	debLayers   []bkllb.State
	debGroups   [][]int
	wheelLayers []bkllb.State
	wheelGroups [][]int
	warnings    []string
}

// budgetLayers lays the closure, apt packages and wheels, out within the
// deploy's layer budget (docs/cir.md, "Layer budget"). The budget counts
// every layer of the assembled image; the alternatives layer, the base's
// and the application's layers are fixed, the packages and the wheels take
// what is left (cir.PlanClosure).
func budgetLayers(req DeployRequest, baseLayers int, debs []cir.Deb, wheels []cir.Wheel, alt bool, helper bkllb.State, unpack llb.DebUnpack, interp cir.Interpreter, resolved *cir.Resolved) (budgetPlan, error) {
	budget := req.MaxLayers
	if budget == 0 {
		budget = cir.DefaultMaxLayers
	}
	fixed := baseLayers + len(req.AppRecord.Allotments)
	what := fmt.Sprintf("the base (%d layers) and the application (%d)", baseLayers, len(req.AppRecord.Allotments))
	if alt {
		fixed++
		what = fmt.Sprintf("the base (%d layers), the alternatives (1) and the application (%d)", baseLayers, len(req.AppRecord.Allotments))
	}
	var out budgetPlan
	slots := len(debs) + len(wheels)
	if budget > 0 {
		slots = budget - fixed
		if len(debs)+len(wheels) == 0 {
			if fixed > budget {
				out.warnings = append(out.warnings, fmt.Sprintf("the image has %d layers, over the layer budget of %d: %s", fixed, budget, what))
			}
			slots = 0
		}
	}
	plan, err := cir.PlanClosure(debs, wheels, slots)
	var noRoom *cir.NoRoomError
	if errors.As(err, &noRoom) {
		return budgetPlan{}, fmt.Errorf("layer budget %d (--max-layers): %s leave %s; raise the budget", budget, what, noRoom.Left())
	}
	if err != nil {
		return budgetPlan{}, err
	}
	out.debGroups, out.wheelGroups = plan.Apt.Groups, plan.Wheels.Groups
	for _, g := range plan.Apt.Groups {
		members := make([]cir.Deb, len(g))
		for j, k := range g {
			members[j] = debs[k]
		}
		out.debLayers = append(out.debLayers, llb.DebGroupLayer(members, helper, unpack, req.Epoch))
	}
	auth := func(w cir.Wheel) string { return wheelAuth(req.Record.Resolver, w) }
	for _, g := range plan.Wheels.Groups {
		members := make([]cir.Wheel, len(g))
		for j, k := range g {
			members[j] = wheels[k]
		}
		out.wheelLayers = append(out.wheelLayers, llb.WheelGroupLayer(members, helper, interp, auth, req.Epoch))
	}
	if !plan.Grouped() {
		return out, nil
	}
	resolved.LayerBudget = budget
	// own counts the layers of one member at least the threshold (a
	// bucket that got one small member is still a shared layer).
	own := func(p cir.LayerPlan, size func(int) int64, name func(int) string) (n int, layers [][]string) {
		for _, g := range p.Groups {
			names := make([]string, len(g))
			for j, k := range g {
				names[j] = name(k)
			}
			layers = append(layers, names)
			if len(g) == 1 && size(g[0]) >= p.Threshold {
				n++
			}
		}
		return n, layers
	}
	ownDebs, aptLayers := own(plan.Apt, func(i int) int64 { return debs[i].Size }, func(i int) string { return debs[i].Name })
	ownWheels, wheelLayers := own(plan.Wheels, func(i int) int64 { return wheels[i].Size }, func(i int) string { return wheels[i].Name })
	resolved.AptLayers, resolved.WheelLayers = aptLayers, wheelLayers
	threshold := max(plan.Apt.Threshold, plan.Wheels.Threshold)
	var closure, keep, share string
	switch {
	case len(wheels) == 0:
		closure = fmt.Sprintf("the apt closure of %d packages", len(debs))
		keep = fmt.Sprintf("%d packages", ownDebs)
		share = fmt.Sprintf("%d layers by source package", len(plan.Apt.Groups)-ownDebs)
	case len(debs) == 0:
		closure = fmt.Sprintf("the pip closure of %d wheels", len(wheels))
		keep = fmt.Sprintf("%d wheels", ownWheels)
		share = fmt.Sprintf("%d layers by project name", len(plan.Wheels.Groups)-ownWheels)
	default:
		closure = fmt.Sprintf("the closure of %d apt packages and %d wheels", len(debs), len(wheels))
		keep = fmt.Sprintf("%d packages and %d wheels", ownDebs, ownWheels)
		share = fmt.Sprintf("%d layers by source package and %d by project name", len(plan.Apt.Groups)-ownDebs, len(plan.Wheels.Groups)-ownWheels)
	}
	out.warnings = append(out.warnings, fmt.Sprintf("%s is over the layer budget of %d layers (%d for the base, the alternatives and the application): "+
		"%s of %d bytes or more keep a layer of their own, the others share %s (--max-layers to change the budget)",
		closure, budget, fixed, keep, threshold, share))
	return out, nil
}

// warnDeploy shows the deploy's warnings on the definition's final vertex,
// with field.RunnableWarning for the assembled layer count.
func warnDeploy(ctx context.Context, c client.Client, def *bkllb.Definition, warnings []string, rec *field.Record) {
	if w := field.RunnableWarning(rec.BaseLayers, len(rec.Allotments)); w != "" {
		warnings = append(warnings, w)
	}
	if len(def.Def) == 0 {
		return
	}
	dgst := digest.FromBytes(def.Def[len(def.Def)-1])
	for _, w := range warnings {
		_ = c.Warn(ctx, dgst, w, client.WarnOpts{})
	}
}
