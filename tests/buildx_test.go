package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tdfs-kit/tdfs/field"
)

// docker runs the docker CLI (buildx plugin, remote builder on our
// buildkitd) with the test's private config.
func docker(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return dockerEnv(t, dir, nil, args...)
}

func dockerEnv(t *testing.T, dir string, vars []string, args ...string) string {
	t.Helper()
	out, err := tryDocker(dir, vars, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tryDocker(dir string, vars []string, args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "DOCKER_CONFIG="+env.docker), vars...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var frontendOnce struct {
	sync.Once
	ref string
	err string
}

// frontendImage builds the frontend image with docker buildx bake
// (hack/images) and pushes it to the main registry, once.
func frontendImage(t *testing.T) string {
	t.Helper()
	frontendOnce.Do(func() {
		cmd := exec.Command(filepath.Join(env.root, "hack/images"), env.registry+"/2dfs", "e2e")
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+env.docker, "PLATFORMS=linux/amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			frontendOnce.err = err.Error() + "\n" + string(out)
			return
		}
		frontendOnce.ref = env.registry + "/2dfs/frontend:e2e"
	})
	if frontendOnce.ref == "" {
		t.Fatalf("hack/images: %s", frontendOnce.err)
	}
	return frontendOnce.ref
}

// withDescriptor rewrites a context's 2dfs.json with extra top-level keys.
func withDescriptor(t *testing.T, dir string, extra map[string]any) {
	t.Helper()
	p := filepath.Join(dir, "2dfs.json")
	dt, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(dt, &d); err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		if v == nil {
			delete(d, k)
		} else {
			d[k] = v
		}
	}
	dt, _ = json.Marshal(d)
	writeFile(t, p, dt)
}

// The four ways users invoke the frontend build the same image, to the byte.
func TestEntryPointsGiveSameImage(t *testing.T) {
	frontend := frontendImage(t)
	dir, _ := example(t, baseImage(t, "v1", ""))
	repo := env.registry + "/entry/field"
	noAttest := []string{"--provenance=false", "--sbom=false"}

	// 1. docker buildx build with the descriptor's "syntax" key.
	withDescriptor(t, dir, map[string]any{"syntax": frontend})
	docker(t, dir, append([]string{"buildx", "build", "-f", "2dfs.json", "--output", "type=image,name=" + repo + ":syntax,push=true", "."}, noAttest...)...)
	// 2. docker buildx build with BUILDKIT_SYNTAX and no "syntax" key.
	withDescriptor(t, dir, map[string]any{"syntax": nil})
	docker(t, dir, append([]string{"buildx", "build", "-f", "2dfs.json", "--build-arg", "BUILDKIT_SYNTAX=" + frontend, "--output", "type=image,name=" + repo + ":buildarg,push=true", "."}, noAttest...)...)
	// 3. buildctl with the gateway frontend.
	runCmd(t, dir, filepath.Join(env.tools, "buildctl"), "--addr", env.buildkit, "build", "--frontend", "gateway.v0",
		"--opt", "source="+frontend, "--opt", "filename=2dfs.json", "--local", "context=.", "--local", "dockerfile=.",
		"--output", "type=image,name="+repo+":buildctl,push=true")
	// 4. The in-process CLI at BuildKit's default compression (gzip, its
	// default level).
	build(t, env.buildkit, dir, "-t", repo+":cli-gzip", "--push", "--compression", "gzip", "--compression-level", "-1")
	// 5. The CLI at its own default (zstd, level 1), and buildctl told the
	// same: the README's claim is "the same digest at the same compression".
	// On a builder of their own: BuildKit reuses the blobs of a layer's
	// earlier export, so the gzip builds above would make these gzip too.
	fresh := extraBuildkitd(t, "entry-zstd")
	build(t, fresh, dir, "-t", repo+":cli", "--push")
	runCmd(t, dir, filepath.Join(env.tools, "buildctl"), "--addr", fresh, "build", "--frontend", "gateway.v0",
		"--opt", "source="+frontend, "--opt", "filename=2dfs.json", "--local", "context=.", "--local", "dockerfile=.",
		"--output", "type=image,name="+repo+":buildctl-zstd,push=true,compression=zstd,compression-level=1")

	gzipped := pull(t, repo+":cli-gzip")
	for _, tag := range []string{"syntax", "buildarg", "buildctl"} {
		if got := pull(t, repo+":"+tag); got.digest != gzipped.digest {
			t.Errorf("%s build gave %s, the CLI with --compression gzip gave %s", tag, got.digest, gzipped.digest)
		}
	}
	zstd := pull(t, repo+":cli")
	if got := pull(t, repo+":buildctl-zstd"); got.digest != zstd.digest {
		t.Errorf("buildctl with compression=zstd,compression-level=1 gave %s, the CLI's default gave %s", got.digest, zstd.digest)
	}
	// At different compression the layers differ, so the claim must name
	// the setting (and this test would notice if the defaults converged).
	if zstd.digest == gzipped.digest {
		t.Errorf("the CLI's default and gzip builds share digest %s: the README's compression note is out of date", zstd.digest)
	}
}

// One bake builds two models of a monorepo; their shared allotments are the
// same blobs in the registry, and the model-specific ones differ.
func TestBakeMonorepo(t *testing.T) {
	frontend := frontendImage(t)
	dir := filepath.Join(env.root, "examples/monorepo")
	prefix := env.registry + "/mono"
	dockerEnv(t, dir, []string{"FRONTEND=" + frontend, "REGISTRY=" + prefix, "TAG=v1"},
		"buildx", "bake", "--push", "--progress", "plain")
	chat, code := pull(t, prefix+"/chat:v1"), pull(t, prefix+"/code:v1")
	// The example exports zstd layers (fast compression for weights).
	if mt := chat.manifest.Layers[0].MediaType; mt != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("monorepo layers are %s, want zstd", mt)
	}
	shared := []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}}
	for _, c := range shared {
		if chat.allotmentLayers()[c] != code.allotmentLayers()[c] {
			t.Errorf("shared allotment %s: chat %s, code %s", c, chat.allotmentLayers()[c], code.allotmentLayers()[c])
		}
	}
	own := field.Cell{Row: 1, Col: 0}
	if chat.allotmentLayers()[own] == code.allotmentLayers()[own] {
		t.Errorf("the models' own weights have the same layer %s", chat.allotmentLayers()[own])
	}
}

// registryBlobs lists the blobs the main registry stores, with their sizes.
func registryBlobs(t *testing.T) map[string]int64 {
	t.Helper()
	blobs := map[string]int64{}
	paths, err := filepath.Glob(filepath.Join(env.dir, "registry-data/docker/registry/v2/blobs/sha256/*/*/data"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		blobs["sha256:"+filepath.Base(filepath.Dir(p))] = st.Size()
	}
	return blobs
}

// A registry cache carries allotments across builders: a fresh buildkitd
// with an empty root, importing the cache, rebuilds and pushes only the
// allotment that changed.
func TestRemoteCacheAcrossBuilders(t *testing.T) {
	frontend := frontendImage(t)
	dir, _ := example(t, baseImage(t, "v1", ""))
	withDescriptor(t, dir, map[string]any{"syntax": frontend})
	repo := env.registry + "/remote-cache/field"
	cache := "type=registry,ref=" + env.registry + "/remote-cache/cache:latest"
	docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--provenance=false", "--sbom=false",
		"--output", "type=image,name="+repo+":v1,push=true", "--cache-to", cache+",mode=max", ".")
	first := pull(t, repo+":v1")

	addr := extraBuildkitd(t, "remote-cache")
	docker(t, dir, "buildx", "create", "--name", "fresh", "--driver", "remote", addr)
	data := []byte("a new version of split d\n")
	writeFile(t, filepath.Join(dir, "splits/d.bin"), data)

	before := registryBlobs(t)
	out := docker(t, dir, "buildx", "build", "--builder", "fresh", "--progress", "plain", "-f", "2dfs.json", "--provenance=false", "--sbom=false",
		"--output", "type=image,name="+repo+":v2,push=true", "--cache-from", cache, ".")
	after := registryBlobs(t)
	second := pull(t, repo+":v2")

	changed := field.Cell{Row: 1, Col: 1}
	for cell, cached := range allotmentVertices(t, out, exampleCells) {
		if cached == (cell == changed.String()) {
			t.Errorf("allotment %s: cached=%v after changing only %s:\n%s", cell, cached, changed, out)
		}
	}
	var pushed []string
	var bytes int64
	for d, size := range after {
		if _, ok := before[d]; !ok {
			pushed = append(pushed, d)
			bytes += size
		}
	}
	wantPushed := map[string]bool{
		second.allotmentLayers()[changed]:      true, // the changed allotment
		second.manifest.Config.Digest.String(): true, // its new config
		second.digest.String():                 true, // and manifest
	}
	for _, d := range pushed {
		if !wantPushed[d] {
			t.Errorf("pushed blob %s, which is neither the changed layer nor the new config or manifest", d)
		}
	}
	if len(pushed) != len(wantPushed) {
		t.Errorf("pushed %d blobs (%d bytes), want %d: %v", len(pushed), bytes, len(wantPushed), pushed)
	}
	t.Logf("second build pushed %d blobs, %d bytes", len(pushed), bytes)
	for cell, layer := range first.allotmentLayers() {
		if cell != changed && second.allotmentLayers()[cell] != layer {
			t.Errorf("allotment %s changed layer: %s -> %s", cell, layer, second.allotmentLayers()[cell])
		}
	}
}

// docker buildx build --platform a,b gives an index whose platform
// manifests each carry the field record and share allotment layers.
func TestBuildxMultiPlatform(t *testing.T) {
	frontend := frontendImage(t)
	platforms := "linux/amd64,linux/arm64"
	dir, _ := example(t, baseImage(t, "multi", platforms))
	withDescriptor(t, dir, map[string]any{"syntax": frontend})
	ref := env.registry + "/buildx-multi/field:v1"
	docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--platform", platforms, "--output", "type=image,name="+ref+",push=true", ".")

	checkSharedAcrossPlatforms(t, ref)
}

// The common mistakes fail with messages that say what to do.
func TestCommonMistakes(t *testing.T) {
	frontend := frontendImage(t)
	t.Run("Dockerfile handed to the 2DFS frontend", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY a /a\n"))
		out, err := tryDocker(dir, nil, "buildx", "build", "--build-arg", "BUILDKIT_SYNTAX="+frontend, ".")
		if err == nil || !strings.Contains(out, "Dockerfile looks like a Dockerfile, but this is the 2DFS frontend") {
			t.Fatalf("err %v, output:\n%s", err, out)
		}
	})
	t.Run("descriptor without syntax", func(t *testing.T) {
		dir, _ := example(t, "")
		out, err := tryDocker(dir, nil, "buildx", "build", "-f", "2dfs.json", ".")
		// BuildKit's Dockerfile frontend gets the JSON; the README explains
		// this message and how to point the build at our frontend.
		if err == nil || !strings.Contains(out, "unknown instruction: {") {
			t.Fatalf("err %v, output:\n%s", err, out)
		}
		readme, rerr := os.ReadFile(filepath.Join(env.root, "README.md"))
		if rerr != nil || !strings.Contains(string(readme), "unknown instruction: {") {
			t.Fatal("README does not explain the error a descriptor without syntax gives")
		}
	})
	t.Run("frontend image missing", func(t *testing.T) {
		dir, _ := example(t, "")
		missing := env.registry + "/2dfs/frontend:no-such-tag"
		out, err := tryDocker(dir, nil, "buildx", "build", "-f", "2dfs.json", "--build-arg", "BUILDKIT_SYNTAX="+missing, ".")
		if err == nil || !strings.Contains(out, missing) || !strings.Contains(out, "not found") {
			t.Fatalf("err %v, output:\n%s", err, out)
		}
	})
}

// The frontend image is what BuildKit expects of a frontend: a static
// binary as entrypoint on scratch, the caps and network.none labels, and
// nothing at /run (BuildKit mounts its gateway socket there).
func TestFrontendImage(t *testing.T) {
	ref := frontendImage(t)
	img := remoteImage(t, ref)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Labels["moby.buildkit.frontend.network.none"]; got != "true" {
		t.Errorf("network.none label = %q", got)
	}
	caps := cfg.Config.Labels["moby.buildkit.frontend.caps"]
	for _, c := range []string{"moby.buildkit.frontend.inputs", "moby.buildkit.frontend.contexts"} {
		if !strings.Contains(caps, c) {
			t.Errorf("caps label %q lacks %s", caps, c)
		}
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/bin/2dfs-frontend" {
		t.Errorf("entrypoint = %v", cfg.Config.Entrypoint)
	}
	layers, _ := img.Layers()
	var files []string
	for i := range layers {
		entries, _ := readLayer(t, img, i)
		for p := range entries {
			files = append(files, p)
			if p == "/run" || strings.HasPrefix(p, "/run/") {
				t.Errorf("frontend image has %s", p)
			}
		}
	}
	if len(files) == 0 || !slices.Contains(files, "/bin/2dfs-frontend") {
		t.Errorf("frontend image files = %v", files)
	}
}
