package cir

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wheels makes n wheels with sizes spread over four orders of magnitude,
// sorted by name as ParseReport returns them.
func wheels(r *rand.Rand, prefix string, n int) []Wheel {
	var out []Wheel
	for i := 0; i < n; i++ {
		out = append(out, Wheel{Name: fmt.Sprintf("%swheel-%03d", prefix, i), Version: "1", Size: int64(r.Intn(4000)+22) << r.Intn(12)})
	}
	return sortWheels(out)
}

func sortWheels(w []Wheel) []Wheel {
	slices.SortFunc(w, func(a, b Wheel) int { return strings.Compare(a.Name, b.Name) })
	return w
}

// checkPlan checks what every plan must be: at most slots layers, every
// package and every wheel in exactly one layer of its kind, members and
// layers in name order, nothing at or over the threshold shared.
func checkPlan(t *testing.T, debs []Deb, whls []Wheel, slots int, p ClosurePlan) {
	t.Helper()
	if p.Layers() > slots {
		t.Fatalf("%d packages and %d wheels in %d slots: %d layers", len(debs), len(whls), slots, p.Layers())
	}
	kind := func(what string, n int, lp LayerPlan, size func(int) int64) {
		seen := map[int]bool{}
		for gi, g := range lp.Groups {
			if !slices.IsSorted(g) || (gi > 0 && lp.Groups[gi-1][0] >= g[0]) {
				t.Fatalf("%s groups out of order: %v", what, lp.Groups)
			}
			for _, i := range g {
				if seen[i] {
					t.Fatalf("%s %d twice", what, i)
				}
				seen[i] = true
				if len(g) > 1 && size(i) >= lp.Threshold {
					t.Fatalf("%s of %d bytes shares a layer at threshold %d", what, size(i), lp.Threshold)
				}
			}
		}
		if len(seen) != n {
			t.Fatalf("%d of %d %s placed", len(seen), n, what)
		}
	}
	kind("package", len(debs), p.Apt, func(i int) int64 { return debs[i].Size })
	kind("wheel", len(whls), p.Wheels, func(i int) int64 { return whls[i].Size })
}

// Within the budget, one layer per package and per wheel; over it, wheels
// alone are grouped as apt packages are, and an apt closure alone gets the
// plan PlanLayers made before wheels were planned too.
func TestPlanClosureWheels(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	w := wheels(r, "", 40)
	p, err := PlanClosure(nil, w, 40)
	if err != nil || p.Grouped() || len(p.Wheels.Groups) != 40 || p.Wheels.Groups[7][0] != 7 || len(p.Apt.Groups) != 0 {
		t.Fatalf("%v %+v: want one layer per wheel", err, p)
	}
	for _, n := range []int{2, 5, 40, 150} {
		w := wheels(r, "", n)
		for _, slots := range []int{1, 2, 3, 7, 16, 33, 90, n - 1} {
			if slots < 1 || slots >= n {
				continue
			}
			p, err := PlanClosure(nil, slices.Clone(w), slots)
			if err != nil {
				t.Fatal(err)
			}
			checkPlan(t, nil, w, slots, p)
			if !p.Wheels.Grouped() || p.Apt.Grouped() {
				t.Fatalf("%d wheels in %d slots: %+v", n, slots, p)
			}
			again, _ := PlanClosure(nil, slices.Clone(w), slots)
			if !reflect.DeepEqual(p, again) {
				t.Fatal("two plans of one closure differ")
			}
		}
	}
	debs := closure(r, "", 133)
	for _, slots := range []int{5, 40, 97} {
		old, _ := PlanLayers(debs, slots)
		p, _ := PlanClosure(debs, nil, slots)
		if !reflect.DeepEqual(old, p.Apt) || p.Wheels.Groups != nil {
			t.Errorf("apt alone in %d slots: %+v, PlanLayers %+v", slots, p, old)
		}
	}
}

// Packages and wheels together share the budget and one threshold, each kind
// in its own buckets (16 each with the default budget), never in one layer
// with the other kind.
func TestPlanClosureMixed(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	debs := closure(r, "", 80)
	whls := wheels(r, "", 60)
	for _, slots := range []int{2, 3, 10, 50, 97, 139} {
		p, err := PlanClosure(debs, whls, slots)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, debs, whls, slots, p)
		if p.Apt.Threshold != p.Wheels.Threshold || p.Apt.Buckets != p.Wheels.Buckets || !p.Grouped() {
			t.Fatalf("%d slots: %+v", slots, p)
		}
	}
	p, _ := PlanClosure(debs, whls, 97)
	if p.Apt.Buckets != 16 || p.Wheels.Buckets != 16 {
		t.Errorf("buckets %d and %d with 97 slots, want 16 each", p.Apt.Buckets, p.Wheels.Buckets)
	}
	if p, _ := PlanClosure(debs, whls, 140); p.Grouped() || p.Layers() != 140 {
		t.Errorf("fits in 140: %+v", p)
	}
	for _, tc := range []struct {
		debs  []Deb
		whls  []Wheel
		slots int
		want  string
	}{
		{nil, whls, 0, "the layer budget leaves no layer for the 60 wheels"},
		{debs[:3], whls[:4], 1, "the layer budget leaves 1 layer for the 3 apt packages and the 4 wheels, which need one each"},
		{debs[:3], whls[:4], -2, "the layer budget leaves no layer for the 3 apt packages and the 4 wheels"},
	} {
		if _, err := PlanClosure(tc.debs, tc.whls, tc.slots); err == nil || err.Error() != tc.want {
			t.Errorf("%d slots: %v, want %q", tc.slots, err, tc.want)
		}
	}
}

// Two applications that share wheels: the large shared wheels are layers of
// their own in both, and a small wheel's bucket depends on its normalized
// name alone, whatever else the closure holds.
func TestPlanClosureWheelSharing(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	common := wheels(r, "common-", 50)
	a := sortWheels(append(slices.Clone(common), wheels(r, "a-", 60)...))
	b := sortWheels(append(slices.Clone(common), wheels(r, "b-", 90)...))
	pa, err := PlanClosure(closure(r, "x", 30), a, 90)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := PlanClosure(nil, b, 90)
	if err != nil {
		t.Fatal(err)
	}
	if !pa.Wheels.Grouped() || !pb.Wheels.Grouped() {
		t.Fatalf("plans %+v %+v: want both grouped", pa.Wheels, pb.Wheels)
	}
	threshold := max(pa.Wheels.Threshold, pb.Wheels.Threshold)
	where := func(w []Wheel, p LayerPlan, name string) []int {
		for _, g := range p.Groups {
			for _, i := range g {
				if w[i].Name == name {
					return g
				}
			}
		}
		return nil
	}
	shared, small := 0, 0
	for _, c := range common {
		ga, gb := where(a, pa.Wheels, c.Name), where(b, pb.Wheels, c.Name)
		if c.Size >= threshold {
			shared++
			if len(ga) != 1 || len(gb) != 1 {
				t.Errorf("%s (%d bytes) has no layer of its own in both", c.Name, c.Size)
			}
			continue
		}
		if c.Size >= min(pa.Wheels.Threshold, pb.Wheels.Threshold) {
			continue // own in one, grouped in the other
		}
		small++
		// Every member of its layer hashes to its bucket, in both.
		wa, wb := bucketOf(c.Name, pa.Wheels.Buckets), bucketOf(c.Name, pb.Wheels.Buckets)
		for _, i := range ga {
			if bucketOf(a[i].Name, pa.Wheels.Buckets) != wa {
				t.Fatalf("%s shares a layer with %s of another bucket", c.Name, a[i].Name)
			}
		}
		for _, i := range gb {
			if bucketOf(b[i].Name, pb.Wheels.Buckets) != wb {
				t.Fatalf("%s shares a layer with %s of another bucket", c.Name, b[i].Name)
			}
		}
	}
	if shared == 0 || small == 0 {
		t.Fatalf("%d large and %d small common wheels: the test shows nothing", shared, small)
	}
}
