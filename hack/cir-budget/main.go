// Command cir-budget measures the layer budget on real apt closures
// (docs/cir.md, "Layer budget"): for each APP.uris file that
// hack/cir-closures wrote (apt-get --print-uris against the real Debian
// archive), the closure's size, the layers the lazy-builder makes with the
// budget, and for each pair of apps the fraction of the second's dependency
// bytes that are layers of the first too: with one layer per package and
// with the budget's grouping. With -wheels, each closure's Python
// distributions (python3-*) are taken as the wheels a pip resolution of the
// same application would give, and the budget is measured over packages and
// wheels together (wheels.go).
//
//	go run ./hack/cir-budget [-max-layers 100] [-fixed 3] [-wheels] DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tdfs-kit/tdfs/cir"
)

type app struct {
	name string
	debs []cir.Deb
	plan cir.LayerPlan
	// layers maps a layer's identity (its packages and versions) to its
	// bytes (the .debs' sizes: a layer's blob is about its packages').
	layers map[string]int64
	// own is the same for one layer per package.
	own   map[string]int64
	bytes int64
	// byName is the layers' identities in the plan's stacking order (by
	// their first package's name), largest the same layers stacked largest
	// first, the order tried and dropped (docs/cir.md, "Stacking order").
	byName, largest []string
}

func main() {
	budget := flag.Int("max-layers", cir.DefaultMaxLayers, "layer budget")
	fixed := flag.Int("fixed", 3, "layers that are not apt packages: base (1 for hack/debian-base), alternatives (1), application (1)")
	asWheels := flag.Bool("wheels", false, "take the python3-* packages as wheels and measure the budget over packages and wheels")
	flag.Parse()
	files, _ := filepath.Glob(filepath.Join(flag.Arg(0), "*.uris"))
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: cir-budget [-max-layers N] DIR (with the APP.uris of hack/cir-closures)")
		os.Exit(2)
	}
	if *asWheels {
		closures := map[string][]cir.Deb{}
		for _, f := range files {
			dt, err := os.ReadFile(f)
			if err != nil {
				fail(err)
			}
			if closures[strings.TrimSuffix(filepath.Base(f), ".uris")], err = cir.ParseURIs(string(dt)); err != nil {
				fail(err)
			}
		}
		wheels(closures, *budget, *fixed)
		return
	}
	var apps []*app
	for _, f := range files {
		dt, err := os.ReadFile(f)
		if err != nil {
			fail(err)
		}
		debs, err := cir.ParseURIs(string(dt))
		if err != nil {
			fail(err)
		}
		a := &app{name: strings.TrimSuffix(filepath.Base(f), ".uris"), debs: debs, layers: map[string]int64{}, own: map[string]int64{}}
		if a.plan, err = cir.PlanLayers(debs, *budget-*fixed); err != nil {
			fail(err)
		}
		for _, d := range debs {
			a.bytes += d.Size
			a.own[d.Name+"="+d.Version] = d.Size
		}
		for _, g := range a.plan.Groups {
			id, size := layerOf(g, func(i int) (string, int64) { return a.debs[i].Name + "=" + a.debs[i].Version, a.debs[i].Size })
			a.layers[id] = size
			a.byName = append(a.byName, id)
		}
		a.largest = slices.Clone(a.byName)
		slices.SortStableFunc(a.largest, func(x, y string) int { return int(a.layers[y] - a.layers[x]) })
		apps = append(apps, a)
	}
	slices.SortFunc(apps, func(a, b *app) int { return len(a.debs) - len(b.debs) })
	fmt.Printf("budget %d layers, %d of them not apt packages\n\n", *budget, *fixed)
	fmt.Println("| app | packages | .deb bytes | layers | grouped | threshold | own layers | bytes in own layers |")
	fmt.Println("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
	for _, a := range apps {
		own, ownBytes := 0, int64(0)
		for _, g := range a.plan.Groups {
			if len(g) == 1 && a.debs[g[0]].Size >= a.plan.Threshold {
				own++
				ownBytes += a.debs[g[0]].Size
			}
		}
		fmt.Printf("| %s | %d | %.1f MB | %d | %v | %d | %d | %.0f%% |\n", a.name, len(a.debs), mb(a.bytes), len(a.plan.Groups)+*fixed, a.plan.Grouped(), a.plan.Threshold, own, pct(ownBytes, a.bytes))
	}
	fmt.Println("\nsharing: of B's dependency bytes, the share in layers A has too (one layer per package → with the budget)")
	fmt.Println()
	fmt.Println("The prefix columns: of B's dependency bytes, the share in the stack prefix B has in common with A,")
	fmt.Println("which a runtime holding A reuses unpacked, and the layers above it, which it applies again;")
	fmt.Println("with layers stacked by name (the lazy-builder's order) and largest first.")
	fmt.Println()
	fmt.Println("| A (deployed first) | B | common packages | one layer each | with the budget | prefix, by name | prefix, largest first | applied again, by name | applied again, largest first |")
	fmt.Println("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, a := range apps {
		for _, b := range apps {
			if a == b {
				continue
			}
			common := 0
			for k := range b.own {
				if _, ok := a.own[k]; ok {
					common++
				}
			}
			if common == 0 {
				continue
			}
			fmt.Printf("| %s | %s | %d | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %d | %d |\n", a.name, b.name, common, pct(sharedBytes(a.own, b.own), b.bytes), pct(sharedBytes(a.layers, b.layers), b.bytes),
				pct(prefixBytes(a.byName, b.byName, b.layers), b.bytes), pct(prefixBytes(a.largest, b.largest, b.layers), b.bytes),
				len(b.byName)-prefixLen(a.byName, b.byName), len(b.largest)-prefixLen(a.largest, b.largest))
		}
	}
}

func sharedBytes(a, b map[string]int64) int64 {
	var n int64
	for k, size := range b {
		if _, ok := a[k]; ok {
			n += size
		}
	}
	return n
}

// prefixLen is the number of layers b's stack has in common with a's from
// the bottom up.
func prefixLen(a, b []string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// prefixBytes is the bytes of the layers b's stack has in common with a's
// from the bottom up, to the first layer that differs.
func prefixBytes(a, b []string, sizes map[string]int64) int64 {
	var n int64
	for i := 0; i < len(a) && i < len(b) && a[i] == b[i]; i++ {
		n += sizes[b[i]]
	}
	return n
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// layerOf is a layer's identity, its members' NAME=VERSION in stacking
// order, and its bytes; member says both of one member.
func layerOf(g []int, member func(int) (string, int64)) (string, int64) {
	var id []string
	var size int64
	for _, i := range g {
		name, n := member(i)
		id = append(id, name)
		size += n
	}
	return strings.Join(id, " "), size
}
