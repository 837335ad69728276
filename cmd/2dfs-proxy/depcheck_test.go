package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The proxy stays small and starts fast, and an image-rewriting change
// cannot drag a builder into it: no package it is built from, in this
// module or not, may import BuildKit or the containerd and Docker engines.
// (In the spirit of go-containerregistry's depcheck.)
var forbidden = []string{
	"github.com/moby/buildkit",
	"github.com/containerd/containerd",
	"github.com/docker/docker",
	"github.com/docker/cli",
}

// Packages of this module the proxy must be built from, so the check
// cannot pass by listing nothing.
var mustReach = []string{
	"github.com/tdfs-kit/tdfs/field",
	"github.com/tdfs-kit/tdfs/registryproxy",
}

func TestNoBuildKitInTheProxy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr(err))
	}
	imports := map[string][]string{}
	root := ""
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[f[0]] = f[1:]
		root = f[0] // go list -deps prints the named package last
	}
	for _, p := range mustReach {
		if _, ok := imports[p]; !ok {
			t.Fatalf("go list -deps of %s does not reach %s (%d packages)", root, p, len(imports))
		}
	}
	for _, chain := range forbiddenChains(imports, root, forbidden) {
		t.Errorf("2dfs-proxy depends on %s", strings.Join(chain, " -> "))
	}
}

// forbiddenChains returns, for each forbidden package reachable from root,
// the shortest import chain from root to it (breadth-first).
func forbiddenChains(imports map[string][]string, root string, forbidden []string) [][]string {
	isForbidden := func(p string) bool {
		for _, f := range forbidden {
			if p == f || strings.HasPrefix(p, f+"/") {
				return true
			}
		}
		return false
	}
	parent := map[string]string{root: ""}
	queue := []string{root}
	var chains [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if isForbidden(p) {
			var chain []string
			for q := p; q != ""; q = parent[q] {
				chain = append([]string{q}, chain...)
			}
			chains = append(chains, chain)
			continue // one chain per forbidden package, not its own imports
		}
		for _, q := range imports[p] {
			if _, seen := parent[q]; !seen {
				parent[q] = p
				queue = append(queue, q)
			}
		}
	}
	return chains
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
