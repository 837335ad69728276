// Package tests holds the end-to-end tests: real buildkitd, a real
// distribution registry and containerd, started by hack/daemons under a
// temporary folder, and our binaries built from this tree.
package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var env struct {
	root     string // repository root
	dir      string // daemon folder
	tools    string // pinned tool binaries
	buildkit string // BUILDKIT_HOST of the main buildkitd
	registry string // host:port of the main registry
	ctrAddr  string // containerd socket
	docker   string // DOCKER_CONFIG with the buildx builder "tdfs"
	bin      string // folder with our binaries
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	env.root = root
	dir, err := os.MkdirTemp("", "tdfs-e2e-")
	if err != nil {
		panic(err)
	}
	env.dir = dir
	defer os.RemoveAll(dir)
	defer func() {
		if out, err := exec.Command(filepath.Join(root, "hack/daemons"), "down", dir).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "hack/daemons down: %v\n%s", err, out)
		}
	}()
	// Ports are picked by probing, so another process may take one between
	// the probe and the bind: try once more before failing the run.
	var out []byte
	for attempt := 1; ; attempt++ {
		out, err = exec.Command(filepath.Join(root, "hack/daemons"), "up", dir).Output()
		if err == nil {
			break
		}
		fmt.Fprintf(os.Stderr, "hack/daemons up (attempt %d): %v\n%s", attempt, err, stderrOf(err))
		if attempt == 2 {
			return 1
		}
		_ = exec.Command(filepath.Join(root, "hack/daemons"), "down", dir).Run()
	}
	vars := readEnvFile(strings.TrimSpace(string(out)))
	env.tools, env.buildkit, env.registry, env.ctrAddr = vars["TDFS_TOOLS"], vars["BUILDKIT_HOST"], vars["TDFS_REGISTRY"], vars["CONTAINERD_ADDRESS"]
	env.docker = vars["DOCKER_CONFIG"]

	env.bin = filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", env.bin+"/", "./cmd/2dfs")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func readEnvFile(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			vars[k] = v
		}
	}
	return vars
}

// extraBuildkitd starts one more buildkitd with its own empty root.
func extraBuildkitd(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(env.root, "hack/daemons"), "buildkitd", env.dir, name).Output()
	if err != nil {
		t.Fatalf("start buildkitd %s: %v\n%s", name, err, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

// runCmd runs a command and returns its combined output, failing the test
// on a non-zero exit.
func runCmd(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, err := tryCmd(dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func tryCmd(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// build runs `2dfs build` with plain progress against a buildkitd.
func build(t *testing.T, addr, contextDir string, args ...string) string {
	t.Helper()
	return runCmd(t, contextDir, filepath.Join(env.bin, "2dfs"), append([]string{"build", "--addr", addr, "--progress", "plain"}, args...)...)
}

func buildFails(t *testing.T, addr, contextDir string, args ...string) string {
	t.Helper()
	out, err := tryCmd(contextDir, filepath.Join(env.bin, "2dfs"), append([]string{"build", "--addr", addr, "--progress", "plain"}, args...)...)
	if err == nil {
		t.Fatalf("build succeeded, want a failure:\n%s", out)
	}
	return out
}

var (
	vertexLine = regexp.MustCompile(`^#(\d+) (\[.*)$`)
	cachedLine = regexp.MustCompile(`^#(\d+) CACHED$`)
)

// allotmentVertices reads plain progress output and says, for each
// allotment vertex ("[2dfs r,c] ..."), whether BuildKit took it from cache.
func allotmentVertices(progress string) map[string]bool {
	names := map[string]string{}
	cached := map[string]bool{}
	for _, line := range strings.Split(progress, "\n") {
		if m := vertexLine.FindStringSubmatch(line); m != nil {
			if cell, ok := strings.CutPrefix(m[2], "[2dfs "); ok && cell[0] >= '0' && cell[0] <= '9' {
				names[m[1]] = cell[:strings.Index(cell, "]")]
			}
		}
		if m := cachedLine.FindStringSubmatch(line); m != nil {
			cached[m[1]] = true
		}
	}
	out := map[string]bool{}
	for id, cell := range names {
		out[cell] = out[cell] || cached[id]
	}
	return out
}

var baseOnce sync.Map

// baseImage makes (once per tag and platforms) a small base image in the
// main registry with hack/base-image: busybox, and for tags other than v1 one
// more file, so bases differ.
func baseImage(t *testing.T, tag string, platforms string) string {
	t.Helper()
	ref := fmt.Sprintf("%s/base:%s", env.registry, tag)
	key := ref + "|" + platforms
	if _, done := baseOnce.Load(key); done {
		return ref
	}
	version := ""
	if tag != "v1" {
		version = tag
	}
	cmd := exec.Command(filepath.Join(env.root, "hack/base-image"), ref, platforms, version)
	cmd.Env = append(os.Environ(), "BUILDKIT_HOST="+env.buildkit)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/base-image %s: %v\n%s", ref, err, out)
	}
	baseOnce.Store(key, true)
	return ref
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
