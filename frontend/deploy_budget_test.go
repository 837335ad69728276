package frontend

import (
	"fmt"
	"strings"
	"testing"

	bkllb "github.com/moby/buildkit/client/llb"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

func budgetDebs(n int) []cir.Deb {
	var debs []cir.Deb
	for i := 0; i < n; i++ {
		debs = append(debs, cir.Deb{Name: fmt.Sprintf("pkg%02d", i), Version: "1", Arch: "amd64", Filename: fmt.Sprintf("pkg%02d_1_amd64.deb", i),
			URL: fmt.Sprintf("http://r/pkg%02d_1_amd64.deb", i), Size: int64(100 << (i % 12))})
	}
	return debs
}

// The budget counts every layer: the base's, the wheels', the
// alternatives', the application's; the packages get the rest, and the
// resolved label says how they were grouped.
func TestBudgetLayers(t *testing.T) {
	app := field.NewRecord(0, []field.RecordedAllotment{{Row: 0, Col: 0, Dst: []string{"/app"}}, {Row: 0, Col: 1, Dst: []string{"/etc"}}})
	helper := bkllb.Image("helper")
	debs := budgetDebs(12)

	// 20 - (3 base + 2 app + 4 wheels + 1 alternatives) = 10 slots for 12.
	var resolved cir.Resolved
	layers, groups, warnings, err := budgetLayers(DeployRequest{AppRecord: app, MaxLayers: 20}, 3, debs, 4, true, helper, llb.DebUnpack{MergedUsr: true}, &resolved)
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != len(groups) || len(groups) > 10 || len(groups) < 2 || resolved.LayerBudget != 20 || len(resolved.AptLayers) != len(groups) {
		t.Fatalf("%d layers, %d groups, resolved %+v", len(layers), len(groups), resolved)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "the apt closure of 12 packages is over the layer budget of 20 layers (10 for the base, the wheels, the alternatives and the application)") {
		t.Errorf("warnings %q", warnings)
	}

	// Within the default budget: one layer each, nothing in the label.
	resolved = cir.Resolved{}
	_, groups, warnings, err = budgetLayers(DeployRequest{AppRecord: app}, 3, debs, 4, true, helper, llb.DebUnpack{MergedUsr: true}, &resolved)
	if err != nil || len(groups) != 12 || len(warnings) != 0 || resolved.AptLayers != nil || resolved.LayerBudget != 0 {
		t.Fatalf("default budget: %v, %d groups, %q, %+v", err, len(groups), warnings, resolved)
	}
	// No budget.
	_, groups, _, err = budgetLayers(DeployRequest{AppRecord: app, MaxLayers: -1}, 3, budgetDebs(200), 4, true, helper, llb.DebUnpack{MergedUsr: true}, &resolved)
	if err != nil || len(groups) != 200 {
		t.Fatalf("no budget: %v, %d groups", err, len(groups))
	}

	// No room for the packages.
	_, _, _, err = budgetLayers(DeployRequest{AppRecord: app, MaxLayers: 10}, 3, debs, 4, true, helper, llb.DebUnpack{MergedUsr: true}, &resolved)
	if err == nil || err.Error() != "layer budget 10 (--max-layers): the base (3 layers), the wheels (4), the alternatives (1) and the application (2) leave no layer for the 12 apt packages; raise the budget" {
		t.Errorf("no room: %v", err)
	}
	// Wheels alone over the budget: warned, not grouped.
	_, _, warnings, err = budgetLayers(DeployRequest{AppRecord: app, MaxLayers: 5}, 3, nil, 4, false, helper, llb.DebUnpack{MergedUsr: true}, &resolved)
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "the image has 9 layers, over the layer budget of 5") {
		t.Errorf("wheels over the budget: %v %q", err, warnings)
	}
}
