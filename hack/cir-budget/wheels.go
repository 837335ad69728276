package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tdfs-kit/tdfs/cir"
)

// pyApp is a closure split as a pip-based deploy of the same application
// would split it: the Python distributions become wheels, the rest stays
// apt packages.
type pyApp struct {
	name  string
	debs  []cir.Deb
	whls  []cir.Wheel
	plan  cir.ClosurePlan
	today int // layers with the wheels one each and the packages grouped in what is left
	err   error
	// layers maps a wheel layer's identity to its bytes; own is the
	// same with one layer per wheel.
	layers, own map[string]int64
	bytes       int64
}

// interpreter parts of Debian's Python, which a pip closure never holds:
// the base (hack/debian-base) has python3 already.
var interpreter = map[string]bool{"python3": true, "python3-minimal": true, "python3-distutils": true, "python3-lib2to3": true, "python3-dev": true, "python3-pip": true, "python3-setuptools": true, "python3-wheel": true, "python3-pkg-resources": true}

// splitPython turns the python3-* packages of a closure into the wheels a
// pip resolution would give: the project named without the prefix, the
// .deb's size for the wheel's (both are compressed archives of the same
// files). An estimate: Debian packages one project as one python3-*
// package, and pip's wheels for compiled projects are larger (they bundle
// their libraries), so the estimate errs on fewer, smaller wheels.
func splitPython(debs []cir.Deb) ([]cir.Deb, []cir.Wheel) {
	var rest []cir.Deb
	var whls []cir.Wheel
	for _, d := range debs {
		if strings.HasPrefix(d.Name, "python3-") && !interpreter[d.Name] {
			whls = append(whls, cir.Wheel{Name: strings.TrimPrefix(d.Name, "python3-"), Version: d.Version, Size: d.Size})
			continue
		}
		rest = append(rest, d)
	}
	slices.SortFunc(whls, func(a, b cir.Wheel) int { return strings.Compare(a.Name, b.Name) })
	return rest, whls
}

// wheels prints the measurement of the layer budget over wheels
// (docs/cir.md, "Layer budget"): for each app, its wheels, the layers before
// wheels were grouped (wheels fixed, packages grouped in what is left, or
// refused) and with them grouped, and the wheel bytes two apps share.
func wheels(files map[string][]cir.Deb, budget, fixed int) {
	var apps []*pyApp
	for name, all := range files {
		a := &pyApp{name: name, layers: map[string]int64{}, own: map[string]int64{}}
		a.debs, a.whls = splitPython(all)
		slots := budget - fixed
		if a.plan, a.err = cir.PlanClosure(a.debs, a.whls, slots); a.err != nil {
			apps = append(apps, a)
			continue
		}
		a.today = -1
		if old, err := cir.PlanLayers(a.debs, slots-len(a.whls)); err == nil {
			a.today = fixed + len(a.whls) + len(old.Groups)
		} else if len(a.debs) == 0 {
			a.today = fixed + len(a.whls)
		}
		for _, w := range a.whls {
			a.bytes += w.Size
			a.own[w.Name+"="+w.Version] = w.Size
		}
		for _, g := range a.plan.Wheels.Groups {
			id, size := layerOf(g, func(i int) (string, int64) { return a.whls[i].Name + "=" + a.whls[i].Version, a.whls[i].Size })
			a.layers[id] = size
		}
		apps = append(apps, a)
	}
	slices.SortFunc(apps, func(a, b *pyApp) int { return len(a.whls) - len(b.whls) })
	fmt.Printf("budget %d layers, %d of them fixed; python3-* packages as wheels\n\n", budget, fixed)
	fmt.Println("| app | apt packages | wheels | wheel bytes | wheel sizes p50, p90, max | layers, wheels one each | layers, wheels grouped | threshold | own wheel layers | wheel bytes in own layers |")
	fmt.Println("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, a := range apps {
		if a.err != nil {
			fmt.Printf("| %s | %d | %d | | | | %v | | | |\n", a.name, len(a.debs), len(a.whls), a.err)
			continue
		}
		sizes := make([]int64, len(a.whls))
		for i, w := range a.whls {
			sizes[i] = w.Size
		}
		slices.Sort(sizes)
		own, ownBytes := 0, int64(0)
		for _, g := range a.plan.Wheels.Groups {
			if len(g) == 1 && a.whls[g[0]].Size >= a.plan.Wheels.Threshold {
				own++
				ownBytes += a.whls[g[0]].Size
			}
		}
		today := "refused"
		if a.today >= 0 {
			today = fmt.Sprint(a.today)
		}
		q := func(p float64) string { return kb(sizes[min(len(sizes)-1, int(p*float64(len(sizes))))]) }
		fmt.Printf("| %s | %d | %d | %.1f MB | %s, %s, %s | %s | %d | %d | %d | %.0f%% |\n", a.name, len(a.debs), len(a.whls), mb(a.bytes), q(0.5), q(0.9), kb(sizes[len(sizes)-1]),
			today, fixed+a.plan.Layers(), a.plan.Wheels.Threshold, own, pct(ownBytes, a.bytes))
	}
	fmt.Println("\nsharing: of B's wheel bytes, the share in wheel layers A has too (one layer per wheel → with the budget)")
	fmt.Println()
	fmt.Println("| A (deployed first) | B | common wheels | one layer each | with the budget |")
	fmt.Println("| --- | --- | ---: | ---: | ---: |")
	for _, a := range apps {
		for _, b := range apps {
			if a == b || a.err != nil || b.err != nil {
				continue
			}
			common := 0
			for k := range b.own {
				if _, ok := a.own[k]; ok {
					common++
				}
			}
			if common < 5 {
				continue
			}
			fmt.Printf("| %s | %s | %d | %.0f%% | %.0f%% |\n", a.name, b.name, common, pct(sharedBytes(a.own, b.own), b.bytes), pct(sharedBytes(a.layers, b.layers), b.bytes))
		}
	}
}

func kb(n int64) string { return fmt.Sprintf("%.0f KB", float64(n)/1e3) }
