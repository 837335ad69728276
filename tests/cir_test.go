package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
)

// cirContext writes an application folder and a CIR descriptor on base.
func cirContext(t *testing.T, base string, deps map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app/main.py"), []byte("import mypkg\nprint('app', mypkg.VALUE)\n"))
	desc := map[string]any{
		"base":         base,
		"dependencies": deps,
		"config":       map[string]any{"entrypoint": []string{"python3", "/app/main.py"}, "env": []string{"PYTHONUNBUFFERED=1"}, "workdir": "/app"},
		"allotments":   []map[string]any{{"src": "app", "dst": "/app", "row": 0, "col": 0}},
	}
	dt, err := json.Marshal(desc)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "2dfs.json"), dt)
	return dir
}

// The pre-builder: one platform-independent manifest with the application
// layer only, the record pinning the base for each target platform, the
// config kept for deploy; inspect shows it; a runtime that runs it by
// mistake fails with a message naming 2dfs deploy; a base without a target
// platform fails the pre-build.
func TestCIRPreBuild(t *testing.T) {
	base := baseImage(t, "v1", "linux/amd64,linux/arm64")
	dir := cirContext(t, base, map[string]any{"pip": []string{"mypkg==1.0", "purepkg"}, "pipIndex": "http://127.0.0.1:1/simple"})
	ref := env.registry + "/cir/app:v1"
	build(t, env.buildkit, dir, "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push")

	desc, err := remote.Get(reference(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Fatalf("a CIR is one manifest, got %s", desc.MediaType)
	}
	img := remoteImage(t, ref)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cir.Decode(cfg.Config.Labels[cir.LabelKey])
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.PlatformNames(); strings.Join(got, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("base platforms %v", got)
	}
	if !strings.HasPrefix(rec.Base.Ref, env.registry+"/base@sha256:") {
		t.Errorf("base ref %q is not pinned by digest", rec.Base.Ref)
	}
	if strings.Join(rec.Dependencies.Pip, " ") != "mypkg==1.0 purepkg" || rec.Resolver.PipIndex != "http://127.0.0.1:1/simple" {
		t.Errorf("record %+v", rec)
	}
	if rec.Config.Entrypoint == nil || strings.Join(*rec.Config.Entrypoint, " ") != "python3 /app/main.py" || rec.Config.WorkingDir != "/app" {
		t.Errorf("config in the record %+v", rec.Config)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != cir.NotDeployedEntrypoint || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("CIR config: entrypoint %q, platform %s/%s", cfg.Config.Entrypoint, cfg.OS, cfg.Architecture)
	}
	ls := layers(t, ref)
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	frec, err := field.FromConfig(raw)
	if err != nil || len(ls) != 1 || frec.BaseLayers != 0 || len(frec.Allotments) != 1 {
		t.Fatalf("want the application layer alone: %d layers, record %+v, %v", len(ls), frec, err)
	}

	out := twodfs(t, "inspect", "--insecure", ref)
	for _, want := range []string{"CIR (record v1)", "base platforms: linux/amd64, linux/arm64", "pip (2 direct, from http://127.0.0.1:1/simple): mypkg==1.0 purepkg", "/app"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	// A runtime that runs the CIR gets the message, not a broken container.
	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref)...)
	id := fmt.Sprintf("cir%d", os.Getpid())
	run, err := tryCmd("", "ctr", append(ctr, "run", "--rm", ref, id)...)
	if err == nil || !strings.Contains(run, "this image is a 2DFS CIR") || !strings.Contains(run, "2dfs deploy") {
		t.Errorf("running a CIR: %v\n%s", err, run)
	}

	// A target platform the base lacks fails the pre-build.
	out = buildFails(t, env.buildkit, dir, "--platform", "linux/amd64,linux/riscv64", "-t", env.registry+"/cir/app:bad")
	dt, err := os.ReadFile(filepath.Join(dir, "2dfs.json"))
	if err != nil {
		t.Fatal(err)
	}
	col := strings.Index(string(dt), `"`+base+`"`) + 1
	if !strings.Contains(out, fmt.Sprintf(`2dfs.json:1:%d: base %q: no image for linux/riscv64, a target platform of this CIR`, col, base)) {
		t.Errorf("want the missing platform named:\n%s", out)
	}
}

// The config block gives the same image config with either build engine.
func TestConfigBlock(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app/main.sh"), []byte("echo hi\n"))
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"base": "`+baseImage(t, "v1", "")+`",
		"config": {"entrypoint": ["/bin/busybox", "sh", "/app/main.sh"], "env": ["A=1"], "workdir": "/app", "user": "1000:1000", "exposedPorts": [8080]},
		"allotments": [{"src": "app", "dst": "/app", "row": 0, "col": 0}]}`))
	for _, engine := range []string{"direct", "buildkit"} {
		ref := env.registry + "/config/app:" + engine
		build(t, env.buildkit, dir, "--engine", engine, "-t", ref, "--push")
		cfg, err := remoteImage(t, ref).ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Config
		if strings.Join(c.Entrypoint, " ") != "/bin/busybox sh /app/main.sh" || c.Cmd != nil || c.WorkingDir != "/app" || c.User != "1000:1000" ||
			!strings.Contains(strings.Join(c.Env, " "), "A=1") || len(c.ExposedPorts) != 1 {
			t.Errorf("%s engine: config %+v", engine, c)
		}
	}
}
