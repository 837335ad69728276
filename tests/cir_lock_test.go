package tests

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/cir"
)

// resolvedOf reads what the lazy-builder resolved for an assembled image:
// the closure in its config (cir.ResolvedConfigKey).
func resolvedOf(t *testing.T, ref string) cir.Resolved {
	t.Helper()
	raw, err := remoteImage(t, ref).RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cir.ResolvedFromConfig(raw)
	if err != nil || r == nil {
		t.Fatalf("%s: resolved closure: %v (%v)", ref, err, r)
	}
	return *r
}

func wheelVersions(r cir.Resolved) string {
	var out []string
	for _, w := range r.Wheels {
		out = append(out, w.Name+"=="+w.Version)
	}
	return strings.Join(out, " ")
}

// --lock: the first deploy resolves and writes the lock; after the index
// gets a newer release, a deploy with the lock still assembles the locked
// version (same image digest), one without it gets the new one, and
// --lock-update re-resolves; entries of other platforms are kept, and a
// lock made for another CIR is refused naming the file.
func TestCIRDeployLock(t *testing.T) {
	repoDir := t.TempDir()
	deb(t, repoDir, "libcirlock1", "1.0", "amd64", "", map[string]string{"usr/share/cirlock/lib.txt": "locked lib\n"})
	base := baseWithSources(t, "locktest", "deb [trusted=yes] "+aptRepo(t, repoDir)+" ./\n")
	ix := startPipIndex(t, map[string][]byte{})
	ix.add(wheel(t, "lockpkg", "1.0", "py3-none-any", map[string]string{"lockpkg/__init__.py": "V = '1.0'\n"}, nil, ""))

	ref := env.registry + "/cir/lockapp:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"libcirlock1"}, "pip": []string{"lockpkg>=1.0"}, "pipIndex": ix.URL}), "--platform", "linux/amd64", "-t", ref, "--push")
	lockFile := filepath.Join(t.TempDir(), "app.lock")

	if out, err := deploy(t, ref, "--platform", "linux/amd64", "--lock", lockFile, "-t", ref+"-a", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	data, err := os.ReadFile(lockFile)
	if err != nil {
		t.Fatalf("the deploy wrote no lock: %v", err)
	}
	lock, err := cir.DecodeLock(lockFile, data)
	if err != nil {
		t.Fatal(err)
	}
	amd := lock.Platform("linux/amd64")
	if len(lock.Platforms) != 1 || amd == nil || amd.Python != "3.11" || len(amd.Wheels) != 1 || amd.Wheels[0].Version != "1.0" || !strings.HasPrefix(amd.Wheels[0].URL, strings.TrimSuffix(ix.URL, "/simple")+"/files/") ||
		len(amd.Debs) != 1 || amd.Debs[0].Name != "libcirlock1" || amd.Debs[0].Size <= 0 || !strings.HasSuffix(amd.Debs[0].URL, "libcirlock1_1.0_amd64.deb") || lock.Inputs.PipIndex != ix.URL {
		t.Fatalf("lock:\n%s", data)
	}
	// An entry for another platform, which the deploys below must keep.
	arm := *amd
	arm.Platform = "linux/arm64"
	lock.Set(arm)
	if err := cir.WriteLock(lockFile, lock); err != nil {
		t.Fatal(err)
	}
	withArm, _ := os.ReadFile(lockFile)

	ix.add(wheel(t, "lockpkg", "2.0", "py3-none-any", map[string]string{"lockpkg/__init__.py": "V = '2.0'\n"}, nil, ""))
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "--lock", lockFile, "-t", ref+"-b", "--push"); err != nil {
		t.Fatalf("locked deploy: %v\n%s", err, out)
	}
	if v := wheelVersions(resolvedOf(t, ref+"-b")); v != "lockpkg==1.0" {
		t.Errorf("the locked deploy assembled %s, want the locked lockpkg==1.0", v)
	}
	da, _ := remoteImage(t, ref+"-a").Digest()
	db, _ := remoteImage(t, ref+"-b").Digest()
	if da != db {
		t.Errorf("two deploys with one lock: %s and %s", da, db)
	}
	if now, _ := os.ReadFile(lockFile); string(now) != string(withArm) {
		t.Errorf("a deploy that followed the lock changed it:\n%s", now)
	}

	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-c", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if v := wheelVersions(resolvedOf(t, ref+"-c")); v != "lockpkg==2.0" {
		t.Errorf("a deploy without the lock assembled %s, want the new lockpkg==2.0", v)
	}

	if out, err := deploy(t, ref, "--platform", "linux/amd64", "--lock", lockFile, "--lock-update", "-t", ref+"-d", "--push"); err != nil {
		t.Fatalf("deploy --lock-update: %v\n%s", err, out)
	}
	if v := wheelVersions(resolvedOf(t, ref+"-d")); v != "lockpkg==2.0" {
		t.Errorf("--lock-update assembled %s, want lockpkg==2.0", v)
	}
	updated, err := cir.ReadLock(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(updated.Platforms) != 2 || updated.Platform("linux/amd64").Wheels[0].Version != "2.0" || updated.Platform("linux/arm64").Wheels[0].Version != "1.0" {
		t.Errorf("after --lock-update: %+v", updated.Platforms)
	}

	// A lock of another CIR: refused before anything is resolved.
	other := env.registry + "/cir/lockapp:other"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"libcirlock1"}, "pip": []string{"lockpkg==1.0"}, "pipIndex": ix.URL}), "--platform", "linux/amd64", "-t", other, "--push")
	out, err := deploy(t, other, "--platform", "linux/amd64", "--lock", lockFile, "-t", other+"-amd64", "--push")
	want := fmt.Sprintf(`lock %s was made for another CIR: its pip ["lockpkg>=1.0"], the CIR's are ["lockpkg==1.0"]; re-resolve with --lock-update`, lockFile)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("deploy with another CIR's lock: %v, want %q in\n%s", err, want, out)
	}
	// A lock that is not one: the file named, nothing assembled.
	bad := filepath.Join(t.TempDir(), "bad.lock")
	writeFile(t, bad, []byte(`{"version": 1, "cir": {"base": "x"}, "platforms": [{"platform": "linux/amd64", "wheels": [{"name": "a", "version": "1", "filename": "a.whl", "url": "http://h/a.whl", "digest": "sha256:00"}]}]}`))
	out, err = deploy(t, ref, "--platform", "linux/amd64", "--lock", bad, "-t", ref+"-e", "--push")
	if err == nil || !strings.Contains(out, "lock "+bad+`: platforms[0] (linux/amd64): wheels[0] (a): digest "sha256:00" is not a sha256 digest`) {
		t.Fatalf("deploy with a bad lock: %v\n%s", err, out)
	}
}

// The layer budget, hermetic: with --max-layers 6 a closure of two large and
// four small packages on a 2-layer base with a 1-layer application gets 3
// package layers: the large packages keep their own (the same blobs as in an
// ungrouped deploy and in a second application), the small ones share one
// layer with all their files; the resolved label and the field record say
// so, the deploy warns, and containerd runs the image.
func TestCIRDeployBudget(t *testing.T) {
	repoDir := t.TempDir()
	rnd := rand.New(rand.NewSource(12))
	random := func(n int) string {
		b := make([]byte, n)
		rnd.Read(b)
		return string(b)
	}
	deb(t, repoDir, "bigone", "1.0", "amd64", "", map[string]string{"usr/share/bigone/blob": random(300 << 10)})
	deb(t, repoDir, "bigtwo", "1.0", "amd64", "", map[string]string{"usr/share/bigtwo/blob": random(200 << 10)})
	for _, s := range []string{"s-a", "s-b", "s-c", "s-d", "s-e"} {
		deb(t, repoDir, s, "1.0", "amd64", "", map[string]string{"usr/share/" + s + "/file": s + "\n", "lib/" + s + ".txt": s + " lib\n"})
	}
	base := baseWithSources(t, "budget", "deb [trusted=yes] "+aptRepo(t, repoDir)+" ./\n")

	ref := env.registry + "/cir/budget:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"bigone", "bigtwo", "s-a", "s-b", "s-c", "s-d"}}), "--platform", "linux/amd64", "-t", ref, "--push")
	out, err := deploy(t, ref, "--platform", "linux/amd64", "--max-layers", "6", "-t", ref+"-grouped", "--push")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if !strings.Contains(out, "the apt closure of 6 packages is over the layer budget of 6 layers (3 for the base, the alternatives and the application): 2 packages of") {
		t.Errorf("no budget warning in\n%s", out)
	}
	img := remoteImage(t, ref+"-grouped")
	rec, cells := fieldCells(t, img)
	grouped := layers(t, ref+"-grouped")
	if len(grouped) != 6 || rec.BaseLayers != 2 || strings.Join(cells, " ") != "0,0 0,1 0,2 2,0" {
		t.Fatalf("%d layers, field %d base + cells %v: want 6 layers, packages at 0,0 0,1 0,2", len(grouped), rec.BaseLayers, cells)
	}
	resolved := resolvedOf(t, ref+"-grouped")
	if got, _ := json.Marshal(resolved.AptLayers); resolved.LayerBudget != 6 || string(got) != `[["bigone"],["bigtwo"],["s-a","s-b","s-c","s-d"]]` || len(resolved.Debs) != 6 {
		t.Errorf("resolved: budget %d, layers %s, %d debs", resolved.LayerBudget, got, len(resolved.Debs))
	}
	entries, _ := readLayer(t, img, 4)
	for _, s := range []string{"s-a", "s-b", "s-c", "s-d"} {
		if e, ok := entries["/usr/share/"+s+"/file"]; !ok || string(e.data) != s+"\n" {
			t.Errorf("the shared layer lacks %s's file", s)
		}
		// The merged-/usr move works in a shared layer too.
		if _, ok := entries["/usr/lib/"+s+".txt"]; !ok {
			t.Errorf("the shared layer lacks /usr/lib/%s.txt", s)
		}
	}
	if _, ok := entries["/lib/s-a.txt"]; ok {
		t.Error("the shared layer has a /lib folder, which hides the base's /lib symlink")
	}

	// Without a budget to speak of, one layer per package: the large
	// packages are the same blobs as in the grouped image.
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-own", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	own := layers(t, ref+"-own")
	if len(own) != 9 || own[2].Digest != grouped[2].Digest || own[3].Digest != grouped[3].Digest {
		t.Errorf("ungrouped layers %v\ngrouped %v: want 9, the large packages' blobs shared", own, grouped)
	}

	// A second application with other small packages: the large packages'
	// layers are the first one's.
	ref2 := env.registry + "/cir/budget2:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"bigone", "bigtwo", "s-a", "s-e"}}), "--platform", "linux/amd64", "-t", ref2, "--push")
	if out, err := deploy(t, ref2, "--platform", "linux/amd64", "--max-layers", "6", "-t", ref2+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	second := layers(t, ref2+"-amd64")
	if len(second) != 6 || second[2].Digest != grouped[2].Digest || second[3].Digest != grouped[3].Digest || second[4].Digest == grouped[4].Digest {
		t.Errorf("second app's layers %v\nfirst's %v: want the large packages shared", second, grouped)
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-grouped")...)
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-grouped", fmt.Sprintf("budget%d", os.Getpid()), "/bin/sh", "-c", "cat /usr/share/s-c/file /lib/s-d.txt; wc -c </usr/share/bigone/blob")...)
	if strings.Fields(got)[0] != "s-c" || !strings.Contains(got, "s-d lib") || !strings.HasSuffix(strings.TrimSpace(got), "307200") {
		t.Errorf("the grouped image printed %q", got)
	}

	// No room at all for the packages: a clear error, nothing pushed.
	out, err = deploy(t, ref, "--platform", "linux/amd64", "--max-layers", "3", "-t", ref+"-none", "--push")
	if err == nil || !strings.Contains(out, "layer budget 3 (--max-layers): the base (2 layers) and the application (1) leave no layer for the 6 apt packages; raise the budget") {
		t.Fatalf("deploy with no room: %v\n%s", err, out)
	}
}
