package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/field"
)

// The layer budget on real closures, against the Debian archive: two R
// applications (r-base-core with r-cran-jsonlite, and with r-cran-dplyr)
// assembled with --max-layers 40 on the python3 base, both grouped; every
// package that keeps a layer of its own in both is the same blob in both,
// the fraction of the second's dependency bytes that are blobs of the first
// is logged (docs/cir.md, "Layer budget"), and the grouped R runs. Skips,
// saying so, when the archive cannot be reached.
func TestCIRDebianBudget(t *testing.T) {
	needDebianArchive(t)
	base := debianBase(t)

	type app struct {
		ref    string
		layers map[string]int64 // dependency layer digest -> compressed size
		own    map[string]string
		bytes  int64
	}
	deployApp := func(name string, apt []string) app {
		ref := env.registry + "/cir/" + name + ":v1"
		build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": apt}), "--platform", "linux/amd64", "-t", ref, "--push")
		start := time.Now()
		out, err := deploy(t, ref, "--platform", "linux/amd64", "--max-layers", "40", "-t", ref+"-amd64", "--push")
		if err != nil {
			t.Fatalf("deploy %s: %v\n%s", name, err, out)
		}
		if !strings.Contains(out, "is over the layer budget of 40 layers") {
			t.Errorf("%s: no budget warning", name)
		}
		raw, err := remoteImage(t, ref+"-amd64").RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := field.FromConfig(raw)
		if err != nil {
			t.Fatal(err)
		}
		resolved := resolvedOf(t, ref+"-amd64")
		all := layers(t, ref+"-amd64")
		if len(all) > 40 || len(resolved.AptLayers) == 0 || resolved.LayerBudget != 40 {
			t.Fatalf("%s: %d layers, resolved layers %v", name, len(all), resolved.AptLayers)
		}
		a := app{ref: ref + "-amd64", layers: map[string]int64{}, own: map[string]string{}}
		version := map[string]string{}
		for _, d := range resolved.Debs {
			version[d.Name] = d.Version
		}
		for i, names := range resolved.AptLayers {
			l := all[rec.BaseLayers+i]
			a.layers[l.Digest.String()] = l.Size
			a.bytes += l.Size
			if len(names) == 1 {
				a.own[names[0]+"="+version[names[0]]] = l.Digest.String()
			}
		}
		t.Logf("%s: %d packages in %d layers (%d of their own), %d dependency bytes compressed, deploy %s",
			name, len(resolved.Debs), len(resolved.AptLayers), len(a.own), a.bytes, time.Since(start).Round(time.Second))
		return a
	}
	first := deployApp("rjson", []string{"r-base-core", "r-cran-jsonlite"})
	second := deployApp("rdplyr", []string{"r-base-core", "r-cran-dplyr"})

	sharedOwn := 0
	for pkg, d := range first.own {
		if d2, ok := second.own[pkg]; ok {
			sharedOwn++
			if d != d2 {
				t.Errorf("%s has a layer of its own in both apps but two blobs: %s and %s", pkg, d, d2)
			}
		}
	}
	var shared int64
	for d, size := range second.layers {
		if _, ok := first.layers[d]; ok {
			shared += size
		}
	}
	t.Logf("of the second app's %d dependency bytes, %d (%.0f%%) are blobs of the first; %d packages with layers of their own in both",
		second.bytes, shared, 100*float64(shared)/float64(second.bytes), sharedOwn)
	if sharedOwn == 0 || shared*2 < second.bytes {
		t.Errorf("grouping kept too little sharing: %d of %d bytes", shared, second.bytes)
	}

	// R reads /etc/R/Renviron, which r-base-core's postinst writes (with
	// ucf, from /usr/lib/R/etc/Renviron.ucf); maintainer scripts do not
	// run, so the run names the template (docs/cir.md).
	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", first.ref)...)
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", first.ref, fmt.Sprintf("rjson%d", os.Getpid()), "Rscript", "-e", "cat(jsonlite::toJSON(1:3))")...)
	// R still says "cannot find system Renviron" (it looks for the file
	// itself too) and works.
	if !strings.HasSuffix(strings.TrimSpace(got), "[1,2,3]") {
		t.Errorf("Rscript printed %q", got)
	}
}
