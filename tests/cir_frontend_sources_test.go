package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/cir"
)

// zstdOut is 2dfs deploy's default layer compression, for buildx and bake
// outputs (BuildKit defaults to gzip).
const zstdOut = ",compression=zstd,compression-level=1"

// buildxImage returns the digest and the raw config of the image of arch
// that buildx pushed as ref (default attestations on: an index).
func buildxImage(t *testing.T, ref, arch string) (string, []byte) {
	t.Helper()
	byArch := platformImages(t, ref)
	p, ok := byArch[arch]
	if len(byArch) != 1 || !ok {
		t.Fatalf("%s: want one %s image, got %v", ref, arch, byArch)
	}
	raw, err := p.raw.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return p.digest.String(), raw
}

// A deploy descriptor that names a lock ("lock": FILE in the build context)
// makes a buildx deploy follow it as 2dfs deploy --lock does: after the
// index gets a newer release, the buildx image is the one 2dfs deploy
// --lock made, to the byte. The frontend only reads locks: a missing file,
// a malformed or oversized lock, a lock of another CIR and a target the
// lock has no entry for are refused, each naming the file and, where a
// lock must be made or updated, the 2dfs deploy command that does it.
func TestCIRFrontendLock(t *testing.T) {
	frontend := frontendImage(t)
	base := debianBase(t)
	ix := startPipIndex(t, map[string][]byte{})
	ix.add(wheel(t, "flockpkg", "1.0", "py3-none-any", map[string]string{"flockpkg/__init__.py": "V = '1.0'\n"}, nil, ""))
	repo := env.registry + "/cir/flock"
	ref := repo + ":cir"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"flockpkg>=1.0"}, "pipIndex": ix.URL}), "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push")

	dir := t.TempDir()
	lockFile := filepath.Join(dir, "app.lock")
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "--lock", lockFile, "-t", repo+":cli-fresh", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	lock, err := cir.ReadLock(lockFile)
	if err != nil || lock == nil || len(lock.Platforms) != 1 || lock.Platforms[0].Wheels[0].Version != "1.0" {
		t.Fatalf("the deploy's lock: %+v (%v)", lock, err)
	}
	// A newer release: a deploy that resolves gets it, one that follows
	// the lock does not.
	ix.add(wheel(t, "flockpkg", "2.0", "py3-none-any", map[string]string{"flockpkg/__init__.py": "V = '2.0'\n"}, nil, ""))
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "--lock", lockFile, "-t", repo+":cli-locked", "--push"); err != nil {
		t.Fatalf("locked deploy: %v\n%s", err, out)
	}
	want, _ := remoteImage(t, repo+":cli-locked").Digest()

	descriptor := func(lock string) []byte {
		return []byte(fmt.Sprintf(`{"syntax": %q, "lock": %q}`, frontend, lock))
	}
	writeFile(t, filepath.Join(dir, "2dfs.json"), descriptor("app.lock"))
	docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--build-context", "cir=docker-image://"+ref, "--platform", "linux/amd64",
		"--output", "type=image,name="+repo+":buildx-locked,push=true"+zstdOut, ".")
	got, raw := buildxImage(t, repo+":buildx-locked", "amd64")
	if got != want.String() {
		t.Errorf("buildx with the lock gave %s, 2dfs deploy --lock %s", got, want)
	}
	if r, err := cir.ResolvedFromConfig(raw); err != nil || r == nil || wheelVersions(*r) != "flockpkg==1.0" {
		t.Errorf("buildx with the lock assembled %+v (%v), want the locked flockpkg==1.0", r, err)
	}

	// A lock of exactly the limit (the lock, then blanks) is read whole: a
	// gateway message is at most 16 MiB, so it is read in chunks.
	data, err := os.ReadFile(lockFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "full.lock"), append(data, bytes.Repeat([]byte(" "), cir.MaxLockBytes-len(data))...))
	writeFile(t, filepath.Join(dir, "2dfs.json"), descriptor("full.lock"))
	docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--build-context", "cir=docker-image://"+ref, "--platform", "linux/amd64",
		"--output", "type=image,name="+repo+":buildx-full,push=true"+zstdOut, ".")
	if got, _ := buildxImage(t, repo+":buildx-full", "amd64"); got != want.String() {
		t.Errorf("buildx with a 16 MiB lock gave %s, 2dfs deploy --lock %s", got, want)
	}

	// Another CIR: its inputs differ from the lock's.
	other := repo + ":other"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"flockpkg==1.0"}, "pipIndex": ix.URL}), "--platform", "linux/amd64", "-t", other, "--push")
	writeFile(t, filepath.Join(dir, "bad.lock"), []byte(`{"version": 1, "cir": {"base": "x"}, "platforms": [{"platform": "linux/amd64", "wheels": [{"name": "a", "version": "1", "filename": "a.whl", "url": "http://h/a.whl", "digest": "sha256:00"}]}]}`))
	// 17 MiB: refused by its size, before any of it is read.
	writeFile(t, filepath.Join(dir, "huge.lock"), bytes.Repeat([]byte("\n"), 17<<20))
	if err := os.MkdirAll(filepath.Join(dir, "folder.lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, lock, cir, platforms, want string
	}{
		{"missing file", "missing.lock", ref, "linux/amd64",
			"lock missing.lock: no such file in the build context (or .dockerignore excludes it); the frontend reads a lock and cannot write one: make it with 2dfs deploy " + ref + " --platform linux/amd64 --lock missing.lock"},
		{"a folder", "folder.lock", ref, "linux/amd64", "lock folder.lock: a folder in the build context, not a lock file"},
		{"malformed", "bad.lock", ref, "linux/amd64", `lock bad.lock: platforms[0] (linux/amd64): wheels[0] (a): digest "sha256:00" is not a sha256 digest (sha256:64 hex digits)`},
		{"over the limit", "huge.lock", ref, "linux/amd64", "lock huge.lock: 17825792 bytes, over the 16777216 byte limit"},
		{"another CIR", "app.lock", other, "linux/amd64",
			`lock app.lock was made for another CIR: its pip ["flockpkg>=1.0"], the CIR's are ["flockpkg==1.0"]; re-resolve with --lock-update (or use another lock file); the frontend only reads locks: 2dfs deploy ` + other + " --platform linux/amd64 --lock app.lock --lock-update"},
		{"platform missing", "app.lock", ref, "linux/amd64,linux/arm64",
			"lock app.lock has no entry for linux/arm64 (it has linux/amd64); the frontend reads a lock and cannot add to it: add them with 2dfs deploy " + ref + " --platform linux/arm64 --lock app.lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "2dfs.json"), descriptor(tc.lock))
			out, err := tryDocker(dir, nil, "buildx", "build", "-f", "2dfs.json", "--progress", "plain", "--build-context", "cir=docker-image://"+tc.cir, "--platform", tc.platforms, ".")
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("err %v, want %q in:\n%s", err, tc.want, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			t.Logf("buildx says: %s", lines[len(lines)-1])
		})
	}
}

// pipCIRContext is pipCIR's CIR descriptor and index, for a build by buildx
// or bake.
func pipCIRContext(t *testing.T, frontend, note string) string {
	t.Helper()
	dir := pipCIRDescriptor(t, note)
	withDescriptor(t, dir, map[string]any{"syntax": frontend})
	return dir
}

// The "cir" named context takes an OCI layout (buildx's oci-layout://) and,
// in bake, another target (target:NAME). From a layout copied from the
// registry, the image is the one 2dfs deploy makes from the registry, to
// the byte. From a target of the same bake, the image is the one 2dfs
// deploy makes from that target's pushed CIR but for the CIR digest in its
// record, which a CIR built in the same bake does not have yet: the same
// layers, and the same config once the digest is taken out.
func TestCIRFrontendSources(t *testing.T) {
	frontend := frontendImage(t)
	repo := env.registry + "/cir/sources"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(fmt.Sprintf(`{"syntax": %q}`, frontend)))

	t.Run("oci-layout", func(t *testing.T) {
		cirRef := pipCIR(t, "cir/sources", "from a layout")
		if out, err := deploy(t, cirRef, "--platform", "linux/arm64", "-t", repo+":cli-arm64", "--push"); err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		want, _ := remoteImage(t, repo+":cli-arm64").Digest()
		cirDigest, err := remoteImage(t, cirRef).Digest()
		if err != nil {
			t.Fatal(err)
		}
		layout := filepath.Join(t.TempDir(), "layout")
		runCmd(t, "", filepath.Join(env.tools, "crane"), "pull", "--insecure", "--format", "oci", cirRef, layout)
		docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--build-context", "cir=oci-layout://"+layout+"@"+cirDigest.String(),
			"--platform", "linux/arm64", "--output", "type=image,name="+repo+":layout-arm64,push=true"+zstdOut, ".")
		got, raw := buildxImage(t, repo+":layout-arm64", "arm64")
		if got != want.String() {
			t.Errorf("buildx from the layout gave %s, 2dfs deploy from the registry %s", got, want)
		}
		// 2dfs build attaches the layout to its session as buildx does.
		build(t, env.buildkit, dir, "--build-context", "cir=oci-layout://"+layout+"@"+cirDigest.String(),
			"--platform", "linux/arm64", "-t", repo+":build-layout-arm64", "--push")
		if got, _ := remoteImage(t, repo+":build-layout-arm64").Digest(); got != want {
			t.Errorf("2dfs build from the layout gave %s, 2dfs deploy from the registry %s", got, want)
		}
		if r, err := cir.ResolvedFromConfig(raw); err != nil || r == nil || r.CIR != cirDigest.String() {
			t.Errorf("the record names the CIR %+v (%v), want %s", r, err, cirDigest)
		}
		// Without a digest: refused with the form to use (buildctl, which
		// does not resolve the layout's tag).
		out, err := tryCmd("", filepath.Join(env.tools, "buildctl"), "--addr", env.buildkit, "build", "--frontend", "gateway.v0",
			"--opt", "source="+frontend, "--opt", "context:cir=oci-layout://store:latest", "--opt", "platform=linux/amd64")
		if want := `the "cir" named context "oci-layout://store:latest" has no digest: name the CIR as oci-layout://PATH@sha256:DIGEST`; err == nil || !strings.Contains(out, want) {
			t.Errorf("err %v, want %q in\n%s", err, want, out)
		}
	})

	t.Run("bake target", func(t *testing.T) {
		cirDir := pipCIRContext(t, frontend, "from a target")
		writeFile(t, filepath.Join(dir, "docker-bake.hcl"), []byte(fmt.Sprintf(`target "cir" {
  context = %q
  dockerfile = "2dfs.json"
  platforms = ["linux/amd64", "linux/arm64"]
  output = ["type=image,name=%s:bake-cir,push=true%s"]
}
target "app" {
  dockerfile = "2dfs.json"
  contexts = { cir = "target:cir" }
  platforms = ["linux/amd64"]
  output = ["type=image,name=%s:bake-app,push=true%s"]
}
`, cirDir, repo, zstdOut, repo, zstdOut)))
		docker(t, dir, "buildx", "bake", "--allow", "fs.read="+cirDir, "-f", "docker-bake.hcl", "--progress", "plain", "cir", "app")
		got, raw := buildxImage(t, repo+":bake-app", "amd64")

		// The CIR the bake pushed, deployed by 2dfs deploy.
		cirRef := repo + ":bake-cir"
		cirImg := platformImages(t, cirRef)
		var cirDigest string
		for _, p := range cirImg {
			cirDigest = p.digest.String()
		}
		if len(cirImg) != 1 {
			t.Fatalf("the bake's CIR: want one manifest, got %v", cirImg)
		}
		if out, err := deploy(t, repo+"@"+cirDigest, "--platform", "linux/amd64", "-t", repo+":cli-bake", "--push"); err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		cli := remoteImage(t, repo+":cli-bake")
		wantRaw, err := cli.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if r, err := cir.ResolvedFromConfig(raw); err != nil || r == nil || r.CIR != "" || !strings.Contains(fmt.Sprint(r.Wheels), "manylinux2014_x86_64") {
			t.Errorf("bake image's resolved closure %+v (%v): want no CIR digest, the x86_64 wheel", r, err)
		}
		if stripped := bytes.ReplaceAll(wantRaw, []byte(cirDigest), nil); !bytes.Equal(stripped, raw) {
			t.Errorf("configs differ beyond the CIR digest:\nbake %s\n2dfs deploy %s", raw, wantRaw)
		}
		bakeLayers := layersOfIndex(t, repo+":bake-app", "amd64")
		var cliLayers []string
		for _, l := range layers(t, repo+":cli-bake") {
			cliLayers = append(cliLayers, l.Digest.String())
		}
		if strings.Join(bakeLayers, " ") != strings.Join(cliLayers, " ") {
			t.Errorf("layers differ:\nbake %v\n2dfs deploy %v", bakeLayers, cliLayers)
		}
		cliDigest, _ := cli.Digest()
		t.Logf("bake %s, 2dfs deploy %s: the CIR digest %s in the record is the difference", got, cliDigest, cirDigest)
	})
}

// layersOfIndex lists the layer digests of the image of arch in an index.
func layersOfIndex(t *testing.T, ref, arch string) []string {
	t.Helper()
	p, ok := platformImages(t, ref)[arch]
	if !ok {
		t.Fatalf("%s has no %s image", ref, arch)
	}
	return layerDigests(t, p.raw)
}
