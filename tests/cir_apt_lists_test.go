package tests

import (
	"strings"
	"testing"
)

// apt's lists stay on the build host between deploys (a cache mount): the
// second deploy's apt-get update revalidates them against the repository
// and fetches nothing, instead of the whole index again, and takes the
// earlier resolution, whose inputs did not change. The resolution still
// follows the repository: a newer version published in between is what
// the next deploy assembles.
func TestCIRAptListsKept(t *testing.T) {
	repoDir := t.TempDir()
	deb(t, repoDir, "lists-cir", "1.0", "amd64", "", map[string]string{"usr/share/lists-cir.txt": "1\n"})
	repo := aptRepo(t, repoDir)
	base := baseWithSources(t, "aptlists", "deb [trusted=yes] "+repo+" ./\n")
	ref := env.registry + "/cir/aptlists:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"lists-cir"}}), "--platform", "linux/amd64", "-t", ref, "--push")

	const memo = "2dfs: apt resolution for amd64 taken from an earlier deploy"
	deployed := func(what string) (update string, memoized bool, version string) {
		t.Helper()
		out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push")
		if err != nil {
			t.Fatalf("%s deploy: %v\n%s", what, err, out)
		}
		found := false
		for _, l := range strings.Split(out, "\n") {
			if _, rest, ok := strings.Cut(l, "2dfs: apt-get update for amd64: "); ok {
				update, found = rest, true
			}
		}
		if !found {
			t.Fatalf("%s deploy: no apt-get update line in its progress:\n%s", what, out)
		}
		r := resolvedOf(t, ref+"-amd64")
		if len(r.Debs) != 1 || r.Debs[0].Name != "lists-cir" {
			t.Fatalf("%s deploy resolved %+v; want lists-cir", what, r.Debs)
		}
		return update, strings.Contains(out, memo), r.Debs[0].Version
	}
	if update, memoized, v := deployed("first"); !strings.HasPrefix(update, "Fetched ") || memoized || v != "1.0" {
		t.Fatalf("first deploy: apt-get update %q, resolution taken from an earlier one %v, version %s; want the index fetched and resolved, 1.0", update, memoized, v)
	}
	if update, memoized, v := deployed("second"); update != "nothing fetched" || !memoized || v != "1.0" {
		t.Fatalf("second deploy: apt-get update %q, resolution taken from an earlier one %v, version %s; want the index revalidated and the earlier resolution, 1.0", update, memoized, v)
	}

	// A newer version published after the lists and the resolution were
	// kept: the next deploy fetches the changed index and resolves again.
	deb(t, repoDir, "lists-cir", "2.0", "amd64", "", map[string]string{"usr/share/lists-cir.txt": "2\n"})
	aptRepo(t, repoDir) // re-indexes the folder the first server serves
	if update, memoized, v := deployed("third"); !strings.HasPrefix(update, "Fetched ") || memoized || v != "2.0" {
		t.Fatalf("deploy after a newer version was published: apt-get update %q, resolution taken from an earlier one %v, version %s; want the changed index fetched and 2.0 resolved", update, memoized, v)
	}
}
