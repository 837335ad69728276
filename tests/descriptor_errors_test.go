package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// A descriptor with 400,000 problems (a 300 KB file) reaches the user as
// its first 50 problems and a count, through every way of building.
// Untruncated, the message ran to 17 MB: buildctl and buildx users saw only
// "failed to solve: exit code: 1".
func TestDescriptorWithManyProblems(t *testing.T) {
	const allotments = 100_000 // four problems each: no src, dst, row or col
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "2dfs.json"), []byte(`{"allotments": [`+strings.TrimSuffix(strings.Repeat("{},\n", allotments), ",\n")+`]}`))
	want := []string{
		fmt.Sprintf("%d problems in the 2DFS descriptor:", 4*allotments),
		`2dfs.json:1:17: allotments[0]: missing key "src"`,
		`2dfs.json:13:1: allotments[12]: missing key "dst"`,
		fmt.Sprintf("and %d more", 4*allotments-50),
	}
	check := func(t *testing.T, out string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("build succeeded:\n%s", out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q", w)
			}
		}
		// The 51st problem is only counted.
		if strings.Contains(out, `allotments[12]: missing key "row"`) {
			t.Errorf("output lists more than 50 problems")
		}
		if t.Failed() {
			t.Logf("output:\n%.3000s", out)
		}
	}
	t.Run("2dfs build", func(t *testing.T) {
		out, err := tryCmd(dir, filepath.Join(env.bin, "2dfs"), "build", "--addr", env.buildkit, "--progress", "plain", ".")
		check(t, out, err)
	})
	frontend := frontendImage(t)
	t.Run("buildctl", func(t *testing.T) {
		out, err := tryCmd(dir, filepath.Join(env.tools, "buildctl"), "--addr", env.buildkit, "build", "--progress", "plain",
			"--frontend", "gateway.v0", "--opt", "source="+frontend, "--opt", "filename=2dfs.json",
			"--local", "context=.", "--local", "dockerfile=.")
		check(t, out, err)
	})
	t.Run("buildx", func(t *testing.T) {
		out, err := tryDocker(dir, nil, "buildx", "build", "--progress", "plain", "-f", "2dfs.json", "--build-arg", "BUILDKIT_SYNTAX="+frontend, ".")
		check(t, out, err)
	})
}
