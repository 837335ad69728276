package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tdfs-kit/tdfs/cir"
)

// pipCIR pre-builds, on the main buildkitd, a hermetic pip CIR pinned for
// linux/amd64 and linux/arm64: a local PEP 503 index with a pure wheel and
// a platform-tagged wheel per architecture. The wheels' contents carry note,
// so their layers are this test's own. The app prints "app ARCH note".
func pipCIR(t *testing.T, repo, note string) string {
	t.Helper()
	ref := env.registry + "/" + repo + ":cir"
	build(t, env.buildkit, pipCIRDescriptor(t, note), "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push")
	return ref
}

// pipCIRDescriptor is pipCIR's build context: the CIR descriptor on the
// Debian base and its index, serving a pure wheel and a platform-tagged one
// per architecture whose contents carry note.
func pipCIRDescriptor(t *testing.T, note string) string {
	t.Helper()
	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	add(wheel(t, "purepkg", "2.0", "py3-none-any", map[string]string{"purepkg/__init__.py": fmt.Sprintf("NAME = %q\n", note)}, nil, ""))
	for _, arch := range []string{"x86_64", "aarch64"} {
		add(wheel(t, "mypkg", "1.0", "py3-none-manylinux2014_"+arch, map[string]string{"mypkg/__init__.py": fmt.Sprintf("import purepkg\nVALUE = '%s ' + purepkg.NAME\n", arch)}, []string{"purepkg>=2"}, ""))
	}
	ix := startPipIndex(t, files)
	return cirContext(t, debianBase(t), map[string]any{"pip": []string{"mypkg==1.0"}, "pipIndex": ix.URL})
}

var digestLine = regexp.MustCompile(`(?m)^sha256:[0-9a-f]{64}$`)

// deployDigest runs 2dfs deploy on the buildkitd at addr and returns the
// digest it prints.
func deployDigest(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, err := tryCmd("", filepath.Join(env.bin, "2dfs"), append([]string{"deploy", "--addr", addr, "--progress", "plain", "--insecure"}, args...)...)
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	d := digestLine.FindString(out)
	if d == "" {
		t.Fatalf("deploy printed no digest:\n%s", out)
	}
	return d
}

// The frontend is the lazy-builder when the build has the "cir" named
// context: docker buildx build (one platform, and --platform a,b for an
// index), bake, and buildctl with no descriptor at all assemble the CIR, and
// each platform's image is the one 2dfs deploy makes, to the byte. Bad
// input fails with its message.
func TestCIRFrontendDeploy(t *testing.T) {
	frontend := frontendImage(t)
	cirRef := pipCIR(t, "cir/front", "frontend deploy")
	repo := env.registry + "/cir/front"
	// 2dfs deploy's default layer compression, told to the others: BuildKit
	// defaults to gzip.
	zstd := ",compression=zstd,compression-level=1"
	want := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		if out, err := deploy(t, cirRef, "--platform", "linux/"+arch, "-t", repo+":cli-"+arch, "--push"); err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		d, err := remoteImage(t, repo+":cli-"+arch).Digest()
		if err != nil {
			t.Fatal(err)
		}
		want[arch] = d.String()
	}
	if want["amd64"] == want["arm64"] {
		t.Fatalf("amd64 and arm64 deploys gave one image %s", want["amd64"])
	}

	// The file buildx and bake need to find the frontend: "syntax" alone.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(fmt.Sprintf(`{"syntax": %q}`, frontend)))
	cirContext := "cir=docker-image://" + cirRef

	t.Run("buildx one platform", func(t *testing.T) {
		// BuildKit's default attestations on, as a user runs it: the image
		// is in an index with its provenance.
		docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--build-context", cirContext, "--platform", "linux/arm64",
			"--output", "type=image,name="+repo+":buildx-arm64,push=true"+zstd, ".")
		byArch := platformImages(t, repo+":buildx-arm64")
		arm, ok := byArch["arm64"]
		if len(byArch) != 1 || !ok {
			t.Fatalf("want one arm64 image, got %v", byArch)
		}
		if arm.digest.String() != want["arm64"] {
			t.Errorf("buildx gave %s, 2dfs deploy %s", arm.digest, want["arm64"])
		}
		raw, err := arm.raw.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if r, err := cir.ResolvedFromConfig(raw); err != nil || r == nil || !strings.Contains(fmt.Sprint(r.Wheels), "manylinux2014_aarch64") {
			t.Errorf("buildx image's resolved closure %+v (%v)", r, err)
		}
	})

	checkIndex := func(t *testing.T, ref string) {
		t.Helper()
		byArch := platformImages(t, ref)
		if len(byArch) != 2 {
			t.Fatalf("%s: want amd64 and arm64 images, got %v", ref, byArch)
		}
		for arch, p := range byArch {
			if p.digest.String() != want[arch] {
				t.Errorf("%s: the %s image is %s, 2dfs deploy made %s", ref, arch, p.digest, want[arch])
			}
		}
	}
	t.Run("buildx two platforms", func(t *testing.T) {
		// BuildKit's default attestations on: the index holds them too.
		docker(t, dir, "buildx", "build", "-f", "2dfs.json", "--build-context", cirContext, "--platform", "linux/amd64,linux/arm64",
			"--output", "type=image,name="+repo+":buildx-multi,push=true"+zstd, ".")
		checkIndex(t, repo+":buildx-multi")
	})

	t.Run("bake", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "docker-bake.hcl"), []byte(fmt.Sprintf(`target "app" {
  dockerfile = "2dfs.json"
  contexts = { cir = "docker-image://%s" }
  platforms = ["linux/amd64", "linux/arm64"]
  output = ["type=image,name=%s:bake,push=true%s"]
}
`, cirRef, repo, zstd)))
		docker(t, dir, "buildx", "bake", "-f", "docker-bake.hcl", "--progress", "plain", "app")
		checkIndex(t, repo+":bake")
	})

	t.Run("2dfs build", func(t *testing.T) {
		// The same frontend in-process: a multi-platform deploy from the CLI.
		build(t, env.buildkit, t.TempDir(), "--build-context", cirContext, "--platform", "linux/amd64,linux/arm64", "-t", repo+":cli-multi", "--push")
		checkIndex(t, repo+":cli-multi")
	})

	t.Run("buildctl without a descriptor", func(t *testing.T) {
		runCmd(t, "", filepath.Join(env.tools, "buildctl"), "--addr", env.buildkit, "build", "--frontend", "gateway.v0",
			"--opt", "source="+frontend, "--opt", "context:"+cirContext, "--opt", "platform=linux/amd64",
			"--output", "type=image,name="+repo+":buildctl-amd64,push=true"+zstd)
		if d, _ := remoteImage(t, repo+":buildctl-amd64").Digest(); d.String() != want["amd64"] {
			t.Errorf("buildctl gave %s, 2dfs deploy %s", d, want["amd64"])
		}
	})

	t.Run("errors", func(t *testing.T) {
		base := debianBase(t)
		for _, tc := range []struct {
			name       string
			descriptor string
			args       []string
			want       string
		}{
			{"not a CIR", "", []string{"--build-context", "cir=docker-image://" + base, "--platform", "linux/amd64"},
				base + " is not a CIR: its config has no org.2dfs.cir label"},
			{"platform not pinned", "", []string{"--build-context", cirContext, "--platform", "linux/amd64,linux/s390x"},
				"was pinned for linux/amd64, linux/arm64 at pre-build, not for linux/s390x"},
			{"application descriptor", `{"syntax": %q, "base": "x", "allotments": []}`, []string{"--build-context", cirContext},
				`2dfs.json:1:`},
			{"base context too", "", []string{"--build-context", cirContext, "--build-context", "base=docker-image://" + base},
				`the "base" named context cannot be combined with "cir"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := t.TempDir()
				desc := `{"syntax": %q}`
				if tc.descriptor != "" {
					desc = tc.descriptor
				}
				writeFile(t, filepath.Join(d, "2dfs.json"), []byte(fmt.Sprintf(desc, frontend)))
				out, err := tryDocker(d, nil, append(append([]string{"buildx", "build", "-f", "2dfs.json", "--progress", "plain"}, tc.args...), ".")...)
				if err == nil || !strings.Contains(out, tc.want) {
					t.Fatalf("err %v, want %q in:\n%s", err, tc.want, out)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				t.Logf("buildx says: %s", lines[len(lines)-1])
				if tc.name == "application descriptor" && !strings.Contains(out, `base: not allowed when the build deploys a CIR`) {
					t.Errorf("the message does not name the key:\n%s", out)
				}
			})
		}
	})
}

// On a node whose buildkitd uses the containerd worker, 2dfs deploy -t NAME
// (no push) puts the assembled image straight into containerd's image
// store: containerd lists and runs it, the registry never sees it, and it
// is the image the OCI worker's deploy pushes.
func TestCIRDeployContainerdWorker(t *testing.T) {
	cirRef := pipCIR(t, "cir/ctrd", "containerd worker")
	addr, err := daemons.ContainerdBuildkitd("ctrd")
	if err != nil {
		t.Fatal(err)
	}
	name := env.registry + "/cir/ctrd:amd64"
	before := registryBlobs(t)
	got := deployDigest(t, addr, cirRef, "--platform", "linux/amd64", "-t", name)
	// buildctl's form of the same output.
	again := deployDigest(t, addr, cirRef, "--platform", "linux/amd64", "--output", "type=image,name="+name+"-o")
	if again != got {
		t.Errorf("--output type=image,name= gave %s, -t %s", again, got)
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "buildkit"}
	listed := runCmd(t, "", "ctr", append(ctr, "images", "ls")...)
	for _, n := range []string{name, name + "-o"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(n) + `\s+\S+\s+` + regexp.QuoteMeta(got) + `\s`).MatchString(listed) {
			t.Errorf("containerd's namespace buildkit does not list %s at %s:\n%s", n, got, listed)
		}
	}
	if _, err := remote.Head(reference(t, name)); err == nil {
		t.Errorf("%s is in the registry: the deploy pushed it", name)
	}
	if after := registryBlobs(t); len(after) != len(before) {
		t.Errorf("the registry went from %d to %d blobs during the containerd-worker deploys", len(before), len(after))
	}
	out := runCmd(t, "", "ctr", append(ctr, "run", "--rm", name, fmt.Sprintf("ctrd%d", os.Getpid()))...)
	if strings.TrimSpace(out) != "app x86_64 containerd worker" {
		t.Errorf("the app printed %q", out)
	}

	// The OCI worker's deploy, pushed, is the same image.
	if out, err := deploy(t, cirRef, "--platform", "linux/amd64", "-t", name+"-pushed", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if d, _ := remoteImage(t, name+"-pushed").Digest(); d.String() != got {
		t.Errorf("the OCI worker's deploy made %s, the containerd worker's %s", d, got)
	}
}
