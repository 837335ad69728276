package tests

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tdfs-kit/tdfs/cir"
)

// The layer budget over a pip closure, hermetic: 40 wheels on the local
// PEP 503 index (4 large, 36 small, one of them with a console script),
// deployed with --max-layers 20 on the 1-layer python3 base. The plan the
// pure rule (cir.PlanClosure) makes from the wheels' sizes is the image's:
// its layer count, the wheel row's cells, the resolved record's wheel
// layers, the history naming every wheel of a group; the deploy warns and
// read every size from the index. containerd runs it: every module
// imports, every .dist-info is seen, the console script runs. A lock
// written by the grouped deploy pins every wheel with its size and makes the
// same image. A second application sharing the large wheels, grouped too,
// has their very blobs, as has the same application with one layer per
// wheel (the default budget).
func TestCIRDeployPipBudget(t *testing.T) {
	base := debianBase(t)
	rnd := rand.New(rand.NewSource(40))
	random := func(n int) string {
		b := make([]byte, n)
		rnd.Read(b)
		return string(b)
	}
	files := map[string][]byte{}
	sizes := map[string]int64{}
	add := func(name string, data []byte) {
		files[name] = data
		sizes[strings.ToLower(strings.SplitN(name, "-", 2)[0])] = int64(len(data))
	}
	var first, second []string
	for i := 0; i < 4; i++ {
		n := fmt.Sprintf("bigw%d", i)
		add(wheel(t, n, "1.0", "py3-none-any", map[string]string{n + "/__init__.py": "VALUE = '" + n + "'\n", n + "/blob.bin": random((150 + 30*i) << 10)}, nil, ""))
		first, second = append(first, n), append(second, n)
	}
	for i := 0; i < 35; i++ {
		n := fmt.Sprintf("smallw%02d", i)
		ep := ""
		if i == 3 {
			ep = "[console_scripts]\nsmallw03-cli = smallw03:main\n"
		}
		add(wheel(t, n, "1.0", "py3-none-any", map[string]string{n + "/__init__.py": "VALUE = '" + n + "'\ndef main():\n    print('cli " + n + "')\n"}, nil, ep))
		first = append(first, n)
		if i < 10 {
			second = append(second, n)
		}
	}
	for i := 0; i < 20; i++ {
		n := fmt.Sprintf("otherw%02d", i)
		add(wheel(t, n, "1.0", "py3-none-any", map[string]string{n + "/__init__.py": "VALUE = '" + n + "'\n"}, nil, ""))
		second = append(second, n)
	}
	// mypkg (cirContext's app imports it) imports every other module.
	var imports strings.Builder
	for _, n := range first {
		fmt.Fprintf(&imports, "import %s\n", n)
	}
	imports.WriteString("VALUE = '%d modules' % (len([m for m in globals() if m.startswith(('bigw', 'smallw'))]) + 1)\n")
	add(wheel(t, "mypkg", "1.0", "py3-none-any", map[string]string{"mypkg/__init__.py": imports.String()}, nil, ""))
	first = append(first, "mypkg")
	ix := startPipIndex(t, files)

	// The plan the rule makes for a closure, from the wheels' sizes:
	// 20 - 2 (the base's layer, the application's) = 18 slots.
	plan := func(names []string) [][]string {
		var whls []cir.Wheel
		for _, n := range names {
			whls = append(whls, cir.Wheel{Name: n, Size: sizes[n]})
		}
		slices.SortFunc(whls, func(a, b cir.Wheel) int { return strings.Compare(a.Name, b.Name) })
		p, err := cir.PlanClosure(nil, whls, 18)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]string
		for _, g := range p.Wheels.Groups {
			var ns []string
			for _, i := range g {
				ns = append(ns, whls[i].Name)
			}
			out = append(out, ns)
		}
		return out
	}
	wantFirst := plan(first)
	if len(wantFirst) >= 20 || len(wantFirst) < 5 {
		t.Fatalf("the plan of the first app has %d layers: the test shows nothing", len(wantFirst))
	}
	t.Logf("planned wheel layers: %s", mustJSON(t, wantFirst))

	ref := env.registry + "/cir/pipbudget:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": first, "pipIndex": ix.URL}), "--platform", "linux/amd64", "-t", ref, "--push")
	lockFile := filepath.Join(t.TempDir(), "app.lock")
	out, err := deploy(t, ref, "--platform", "linux/amd64", "--max-layers", "20", "--lock", lockFile, "-t", ref+"-grouped", "--push")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if !strings.Contains(out, "the pip closure of 40 wheels is over the layer budget of 20 layers (2 for the base, the alternatives and the application): 4 wheels of ") {
		t.Errorf("no budget warning in\n%s", out)
	}
	ix.mu.Lock()
	for _, n := range first {
		if f := n + "-1.0-py3-none-any.whl"; ix.sized[f] == 0 {
			t.Errorf("the resolution never asked the index for the size of %s", f)
		}
	}
	ix.mu.Unlock()

	img := remoteImage(t, ref+"-grouped")
	grouped := layers(t, ref+"-grouped")
	resolved := resolvedOf(t, ref+"-grouped")
	if got, _ := json.Marshal(resolved.WheelLayers); resolved.LayerBudget != 20 || len(resolved.Wheels) != 40 || string(got) != mustJSON(t, wantFirst) {
		t.Fatalf("resolved: budget %d, %d wheels, wheel layers %s, want %s", resolved.LayerBudget, len(resolved.Wheels), got, mustJSON(t, wantFirst))
	}
	rec, cells := fieldCells(t, img)
	var want []string
	for i := range wantFirst {
		want = append(want, fmt.Sprintf("1,%d", i))
	}
	want = append(want, "2,0")
	if len(grouped) != 1+len(wantFirst)+1 || rec.BaseLayers != 1 || strings.Join(cells, " ") != strings.Join(want, " ") {
		t.Fatalf("%d layers, field %d base + cells %v: want %d layers, cells %v", len(grouped), rec.BaseLayers, cells, len(wantFirst)+2, want)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, w := range resolved.Wheels {
		digests[w.Name] = w.Digest
	}
	for i, names := range wantFirst {
		h := cfg.History[1+i].CreatedBy
		for _, n := range names {
			if !strings.Contains(h, "wheel "+n+" 1.0 ("+digests[n]+")") && !strings.Contains(h, ", "+n+" 1.0 ("+digests[n]+")") {
				t.Errorf("the history of wheel layer %d does not name %s: %q", i, n, h)
			}
		}
	}
	// Each large wheel keeps a layer of its own.
	own := func(names [][]string, all []v1.Descriptor) map[string]string {
		m := map[string]string{}
		for i, ns := range names {
			if len(ns) == 1 && strings.HasPrefix(ns[0], "bigw") {
				m[ns[0]] = all[1+i].Digest.String()
			}
		}
		return m
	}
	firstOwn := own(wantFirst, grouped)
	if len(firstOwn) != 4 {
		t.Fatalf("large wheels with their own layer: %v", firstOwn)
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-grouped")...)
	id := fmt.Sprintf("pipbudget%d", os.Getpid())
	if got := strings.TrimSpace(runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-grouped", id)...)); got != "app 40 modules" {
		t.Errorf("the app printed %q", got)
	}
	probe := "import importlib.metadata as m; print(len([d for d in m.distributions() if d.metadata['Name'].startswith(('bigw', 'smallw', 'mypkg'))]))"
	if got := strings.TrimSpace(runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-grouped", id+"m", "python3", "-c", probe)...)); got != "40" {
		t.Errorf("%s distributions seen, want 40", got)
	}
	if got := strings.TrimSpace(runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-grouped", id+"c", "smallw03-cli")...)); got != "cli smallw03" {
		t.Errorf("the console script printed %q", got)
	}

	// The lock pins every wheel with its size; deployed with it, the same
	// image.
	lock, err := cir.ReadLock(lockFile)
	if err != nil || lock == nil {
		t.Fatalf("lock: %v", err)
	}
	pinned := lock.Platform("linux/amd64")
	if pinned == nil || len(pinned.Wheels) != 40 {
		t.Fatalf("the lock pins %+v", pinned)
	}
	for _, w := range pinned.Wheels {
		if w.Size != sizes[w.Name] {
			t.Errorf("the lock says %s is %d bytes, it is %d", w.Name, w.Size, sizes[w.Name])
		}
	}
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "--max-layers", "20", "--lock", lockFile, "-t", ref+"-locked", "--push"); err != nil {
		t.Fatalf("deploy with the lock: %v\n%s", err, out)
	}
	a, _ := img.Digest()
	b, _ := remoteImage(t, ref+"-locked").Digest()
	if a != b {
		t.Errorf("the locked deploy made %s, the first %s", b, a)
	}

	// A second application: the large wheels, 10 small ones of the first
	// and 20 of its own, grouped too.
	wantSecond := plan(second)
	ref2 := env.registry + "/cir/pipbudget2:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": second, "pipIndex": ix.URL}), "--platform", "linux/amd64", "-t", ref2, "--push")
	if out, err := deploy(t, ref2, "--platform", "linux/amd64", "--max-layers", "20", "-t", ref2+"-grouped", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if got, _ := json.Marshal(resolvedOf(t, ref2+"-grouped").WheelLayers); string(got) != mustJSON(t, wantSecond) {
		t.Fatalf("second app's wheel layers %s, want %s", got, mustJSON(t, wantSecond))
	}
	secondOwn := own(wantSecond, layers(t, ref2+"-grouped"))
	// With one layer per wheel (the default budget): the large wheels are
	// the same blobs still.
	if out, err := deploy(t, ref2, "--platform", "linux/amd64", "-t", ref2+"-own", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	ungrouped := layers(t, ref2+"-own")
	if r := resolvedOf(t, ref2+"-own"); len(ungrouped) != 1+34+1 || r.WheelLayers != nil || r.LayerBudget != 0 {
		t.Fatalf("ungrouped: %d layers, wheel layers %v", len(ungrouped), r.WheelLayers)
	}
	ungroupedOwn := wheelBlobs(t, ref2+"-own")
	for _, n := range second[:4] { // bigw0..3
		if firstOwn[n] == "" || secondOwn[n] != firstOwn[n] || ungroupedOwn[n] != firstOwn[n] {
			t.Errorf("%s: blob %s in the first app, %s in the second, %s ungrouped: want one blob", n, firstOwn[n], secondOwn[n], ungroupedOwn[n])
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
