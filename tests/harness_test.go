// Package tests holds the end-to-end tests: real buildkitd, a real
// distribution registry and containerd, started by hack/daemons under a
// temporary folder, and our binaries built from this tree. The helpers they
// share with the benchmark are in tests/testenv. Without root or the tools
// hack/tools.sh installs they skip with one line; hack/test runs them all.
package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

var (
	env struct {
		root     string // repository root
		dir      string // daemon folder
		tools    string // pinned tool binaries
		buildkit string // BUILDKIT_HOST of the main buildkitd
		registry string // host:port of the main registry
		ctrAddr  string // containerd socket
		docker   string // DOCKER_CONFIG with the buildx builder "tdfs"
		bin      string // folder with our binaries
	}
	daemons *testenv.Daemons
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run starts the daemons when this machine can run the end-to-end tests
// (testenv.Gate), and otherwise skips them with one line or, under
// hack/test, fails.
func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	if ok, code := testenv.Gate(root); !ok {
		return code
	}
	env.root = root
	dir, err := os.MkdirTemp("", "tdfs-e2e-")
	if err != nil {
		panic(err)
	}
	env.dir = dir
	defer os.RemoveAll(dir)
	defer func() {
		if err := (&testenv.Daemons{Root: root, Dir: dir}).Down(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	d, err := testenv.Up(root, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	daemons = d
	env.tools, env.buildkit, env.registry, env.ctrAddr, env.docker = d.Tools, d.BuildkitHost, d.Registry, d.Containerd, d.DockerConfig

	env.bin = filepath.Join(dir, "bin")
	if out, err := tryCmd(root, "go", "build", "-o", env.bin+"/", "./cmd/2dfs"); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/2dfs: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// extraBuildkitd starts one more buildkitd with its own empty root.
func extraBuildkitd(t *testing.T, name string) string {
	t.Helper()
	addr, err := daemons.Buildkitd(name)
	if err != nil {
		t.Fatal(err)
	}
	return addr
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
	return testenv.Output(dir, nil, name, args...)
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

// exampleCells is the number of allotments in example's field (a 2×2 grid
// and a directory allotment).
const exampleCells = 5

// allotmentVertices reads plain progress output and says, for each
// allotment vertex ("[2dfs r,c] ..."), whether BuildKit took it from cache.
// It fails the test first unless the progress shows exactly want
// allotments: a loop over the cells asserts nothing when the parser reads
// none (a changed progress format would pass as "all cached").
func allotmentVertices(t *testing.T, progress string, want int) map[string]bool {
	t.Helper()
	cells := testenv.AllotmentVertices(progress)
	if len(cells) != want {
		t.Fatalf("progress shows %d allotment vertices, want %d:\n%s", len(cells), want, progress)
	}
	return cells
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
	if err := testenv.BaseImage(env.root, env.buildkit, ref, platforms, version); err != nil {
		t.Fatal(err)
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
