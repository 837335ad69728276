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

func budgetWheels(n int) []cir.Wheel {
	var w []cir.Wheel
	for i := 0; i < n; i++ {
		w = append(w, cir.Wheel{Name: fmt.Sprintf("whl%02d", i), Version: "1", Filename: fmt.Sprintf("whl%02d-1-py3-none-any.whl", i),
			URL: fmt.Sprintf("http://i/whl%02d-1-py3-none-any.whl", i), Size: int64(100 << (i % 12))})
	}
	return w
}

var budgetInterp = cir.Interpreter{Version: "3.11", DebianRelease: "12"}

// The budget counts every layer: the base's, the alternatives', the
// application's; the packages and the wheels get the rest, and the
// resolved record says how they were grouped.
func TestBudgetLayers(t *testing.T) {
	app := field.NewRecord(0, []field.RecordedAllotment{{Row: 0, Col: 0, Dst: []string{"/app"}}, {Row: 0, Col: 1, Dst: []string{"/etc"}}})
	helper := bkllb.Image("helper")
	debs := budgetDebs(12)
	req := func(max int) DeployRequest {
		return DeployRequest{AppRecord: app, MaxLayers: max, Record: &cir.Record{}}
	}

	// 16 - (3 base + 2 app + 1 alternatives) = 10 slots for 12.
	var resolved cir.Resolved
	bp, err := budgetLayers(req(16), 3, debs, nil, true, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err != nil {
		t.Fatal(err)
	}
	if len(bp.debLayers) != len(bp.debGroups) || len(bp.debGroups) > 10 || len(bp.debGroups) < 2 || resolved.LayerBudget != 16 || len(resolved.AptLayers) != len(bp.debGroups) || resolved.WheelLayers != nil {
		t.Fatalf("%d layers, %d groups, resolved %+v", len(bp.debLayers), len(bp.debGroups), resolved)
	}
	if len(bp.warnings) != 1 || !strings.Contains(bp.warnings[0], "the apt closure of 12 packages is over the layer budget of 16 layers (6 for the base, the alternatives and the application)") {
		t.Errorf("warnings %q", bp.warnings)
	}

	// Packages and wheels together: 30 - 6 = 24 slots for 12 + 30.
	resolved = cir.Resolved{}
	whls := budgetWheels(30)
	bp, err = budgetLayers(req(30), 3, debs, whls, true, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bp.debLayers) + len(bp.wheelLayers); n > 24 || len(bp.wheelLayers) != len(bp.wheelGroups) || len(resolved.WheelLayers) != len(bp.wheelGroups) || len(resolved.AptLayers) != len(bp.debGroups) {
		t.Fatalf("%d layers for 24 slots, resolved %+v", n, resolved)
	}
	placed := 0
	for _, names := range resolved.WheelLayers {
		placed += len(names)
	}
	if placed != 30 || len(bp.wheelGroups) == 30 {
		t.Errorf("wheel layers %v: want all 30 wheels in fewer layers", resolved.WheelLayers)
	}
	if len(bp.warnings) != 1 || !strings.Contains(bp.warnings[0], "the closure of 12 apt packages and 30 wheels is over the layer budget of 30 layers (6 for the base, the alternatives and the application): ") ||
		!strings.Contains(bp.warnings[0], "by source package and") || !strings.Contains(bp.warnings[0], "by project name") {
		t.Errorf("warnings %q", bp.warnings)
	}
	// Wheels alone.
	resolved = cir.Resolved{}
	bp, err = budgetLayers(req(20), 3, nil, whls, false, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err != nil || len(bp.wheelGroups) > 15 || len(bp.warnings) != 1 || !strings.HasPrefix(bp.warnings[0], "the pip closure of 30 wheels is over the layer budget of 20 layers (5 for the base, the alternatives and the application): ") || resolved.AptLayers != nil {
		t.Errorf("wheels alone: %v, %d groups, %q, %+v", err, len(bp.wheelGroups), bp.warnings, resolved)
	}

	// Within the default budget: one layer each, nothing in the record.
	resolved = cir.Resolved{}
	bp, err = budgetLayers(req(0), 3, debs, budgetWheels(4), true, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err != nil || len(bp.debGroups) != 12 || len(bp.wheelGroups) != 4 || len(bp.warnings) != 0 || resolved.AptLayers != nil || resolved.WheelLayers != nil || resolved.LayerBudget != 0 {
		t.Fatalf("default budget: %v, %+v, %+v", err, bp, resolved)
	}
	// No budget.
	bp, err = budgetLayers(req(-1), 3, budgetDebs(200), budgetWheels(99), true, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err != nil || len(bp.debGroups) != 200 || len(bp.wheelGroups) != 99 {
		t.Fatalf("no budget: %v, %d and %d groups", err, len(bp.debGroups), len(bp.wheelGroups))
	}

	// No room for the packages, or one layer for both kinds.
	_, err = budgetLayers(req(6), 3, debs, nil, true, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err == nil || err.Error() != "layer budget 6 (--max-layers): the base (3 layers), the alternatives (1) and the application (2) leave no layer for the 12 apt packages; raise the budget" {
		t.Errorf("no room: %v", err)
	}
	_, err = budgetLayers(req(6), 3, debs, whls, false, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err == nil || err.Error() != "layer budget 6 (--max-layers): the base (3 layers) and the application (2) leave 1 layer for the 12 apt packages and the 30 wheels, which need one each; raise the budget" {
		t.Errorf("one layer for both: %v", err)
	}
	// Nothing to group, the base and the application over the budget:
	// warned.
	bp, err = budgetLayers(req(4), 3, nil, nil, false, helper, llb.DebUnpack{MergedUsr: true}, budgetInterp, &resolved)
	if err != nil || len(bp.warnings) != 1 || bp.warnings[0] != "the image has 5 layers, over the layer budget of 4: the base (3 layers) and the application (2)" {
		t.Errorf("base over the budget: %v %q", err, bp.warnings)
	}
}
