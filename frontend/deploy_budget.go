package frontend

import (
	"context"
	"fmt"

	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// budgetLayers lays the apt closure out within the deploy's layer budget
// (docs/cir.md, "Layer budget"): the layers of the packages, their groups
// (indices into debs) and the warnings to show. The budget counts every
// layer of the assembled image; wheels, the alternatives layer, the base's
// and the application's layers are fixed, the packages take what is left.
func budgetLayers(req DeployRequest, baseLayers int, debs []cir.Deb, wheels int, alt bool, helper bkllb.State, unpack llb.DebUnpack, resolved *cir.Resolved) ([]bkllb.State, [][]int, []string, error) {
	budget := req.MaxLayers
	if budget == 0 {
		budget = cir.DefaultMaxLayers
	}
	fixed := baseLayers + len(req.AppRecord.Allotments) + wheels
	if alt {
		fixed++
	}
	var warnings []string
	slots := len(debs)
	if budget > 0 {
		slots = budget - fixed
		if len(debs) == 0 || slots < 1 {
			if fixed+len(debs) > budget {
				what := fmt.Sprintf("the base (%d layers), the wheels (%d) and the application (%d)", baseLayers, wheels, len(req.AppRecord.Allotments))
				if alt {
					what = fmt.Sprintf("the base (%d layers), the wheels (%d), the alternatives (1) and the application (%d)", baseLayers, wheels, len(req.AppRecord.Allotments))
				}
				if len(debs) > 0 {
					return nil, nil, nil, fmt.Errorf("layer budget %d (--max-layers): %s leave no layer for the %d apt packages; raise the budget", budget, what, len(debs))
				}
				warnings = append(warnings, fmt.Sprintf("the image has %d layers, over the layer budget of %d: %s; wheels are not grouped", fixed, budget, what))
			}
			slots = len(debs)
		}
	}
	plan, err := cir.PlanLayers(debs, slots)
	if err != nil {
		return nil, nil, nil, err
	}
	layers := make([]bkllb.State, len(plan.Groups))
	for i, g := range plan.Groups {
		members := make([]cir.Deb, len(g))
		for j, k := range g {
			members[j] = debs[k]
		}
		layers[i] = llb.DebGroupLayer(members, helper, unpack, req.Epoch)
	}
	if plan.Grouped() {
		resolved.LayerBudget = budget
		own := 0
		for _, g := range plan.Groups {
			names := make([]string, len(g))
			for j, k := range g {
				names[j] = debs[k].Name
			}
			resolved.AptLayers = append(resolved.AptLayers, names)
			if len(g) == 1 && debs[g[0]].Size >= plan.Threshold {
				own++
			}
		}
		warnings = append(warnings, fmt.Sprintf("the apt closure of %d packages is over the layer budget of %d layers (%d for the base, the wheels, the alternatives and the application): "+
			"%d packages of %d bytes or more keep a layer of their own, the others share %d layers by source package (--max-layers to change the budget)",
			len(debs), budget, fixed, own, plan.Threshold, len(plan.Groups)-own))
	}
	return layers, plan.Groups, warnings, nil
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
