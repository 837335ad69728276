package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/subrequests/outline"
	"github.com/moby/buildkit/frontend/subrequests/targets"
)

// docker buildx build --call outline and --call targets reach the frontend
// image (it advertises the subrequests capability) and list what a build
// reads: the SOURCE_DATE_EPOCH build arg and the "base" named context.
func TestBuildxSubrequests(t *testing.T) {
	frontend := frontendImage(t)
	base := baseImage(t, "v1", "")
	dir, _ := example(t, base)
	withDescriptor(t, dir, map[string]any{"syntax": frontend})

	out := docker(t, dir, "buildx", "build", "--call", "outline", "-f", "2dfs.json", ".")
	for _, want := range []string{"SOURCE_DATE_EPOCH", "5 allotments", base, "--build-context base="} {
		if !strings.Contains(out, want) {
			t.Errorf("--call outline does not mention %q:\n%s", want, out)
		}
	}

	var o outline.Outline
	if err := json.Unmarshal([]byte(jsonPart(t, docker(t, dir, "buildx", "build", "--progress", "quiet", "--call", "outline,format=json", "-f", "2dfs.json", "."))), &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Args) != 1 || o.Args[0].Name != "SOURCE_DATE_EPOCH" {
		t.Errorf("outline args = %+v, want SOURCE_DATE_EPOCH", o.Args)
	}

	var l targets.List
	if err := json.Unmarshal([]byte(jsonPart(t, docker(t, dir, "buildx", "build", "--progress", "quiet", "--call", "targets,format=json", "-f", "2dfs.json", "."))), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Targets) != 1 || !l.Targets[0].Default || l.Targets[0].Base != base {
		t.Errorf("targets = %+v, want one default target on %s", l.Targets, base)
	}
}

// The frontend image writes its version line on start to its stderr, which
// buildkitd logs, as BuildKit's own frontend puts its version into errors.
func TestBuildxFrontendLogsVersion(t *testing.T) {
	frontend := frontendImage(t)
	dir, _ := example(t, "")
	withDescriptor(t, dir, map[string]any{"syntax": frontend})
	docker(t, dir, "buildx", "build", "--progress", "quiet", "--call", "targets", "-f", "2dfs.json", ".")
	log, err := os.ReadFile(filepath.Join(env.dir, "buildkitd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "2dfs-frontend github.com/tdfs-kit/tdfs ") {
		t.Errorf("buildkitd.log has no 2dfs-frontend version line:\n%s", log)
	}
}

// jsonPart cuts the JSON document out of buildx's combined output (progress
// goes to stderr, the answer to stdout).
func jsonPart(t *testing.T, out string) string {
	t.Helper()
	i, j := strings.Index(out, "{"), strings.LastIndex(out, "}")
	if i < 0 || j < i {
		t.Fatalf("no JSON in:\n%s", out)
	}
	return out[i : j+1]
}
