package tests

import (
	"strings"
	"testing"
)

// apt's lists stay on the build host between deploys (a cache mount): the
// second deploy's apt-get update revalidates them against the repository
// and fetches nothing, instead of the whole index again. The resolution
// still runs: a package added to the repository in between is found.
func TestCIRAptListsKept(t *testing.T) {
	repoDir := t.TempDir()
	deb(t, repoDir, "lists-cir", "1.0", "amd64", "", map[string]string{"usr/share/lists-cir.txt": "1\n"})
	repo := aptRepo(t, repoDir)
	base := baseWithSources(t, "aptlists", "deb [trusted=yes] "+repo+" ./\n")
	ref := env.registry + "/cir/aptlists:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"lists-cir"}}), "--platform", "linux/amd64", "-t", ref, "--push")

	update := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if _, rest, ok := strings.Cut(l, "2dfs: apt-get update for amd64: "); ok {
				return rest
			}
		}
		t.Fatalf("no apt-get update line in the deploy's progress:\n%s", out)
		return ""
	}
	out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	first := update(out)
	out, err = deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push")
	if err != nil {
		t.Fatalf("second deploy: %v\n%s", err, out)
	}
	if second := update(out); !strings.HasPrefix(first, "Fetched ") || second != "nothing fetched" {
		t.Fatalf("apt-get update: first deploy %q, second %q; want the index fetched once, then revalidated", first, second)
	}

	// A package added to the repository after the lists were kept: the
	// next deploy fetches the changed index and finds it.
	deb(t, repoDir, "lists-new", "1.0", "amd64", "", map[string]string{"usr/share/lists-new.txt": "2\n"})
	aptRepo(t, repoDir) // re-indexes the folder the first server serves
	added := env.registry + "/cir/aptlists:v2"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"lists-new"}}), "--platform", "linux/amd64", "-t", added, "--push")
	out, err = deploy(t, added, "--platform", "linux/amd64", "-t", added+"-amd64", "--push")
	if err != nil {
		t.Fatalf("deploy of a package added to the repository: %v\n%s", err, out)
	}
	if third := update(out); !strings.HasPrefix(third, "Fetched ") {
		t.Errorf("apt-get update after the repository changed: %q; want the changed index fetched", third)
	}
	if r := resolvedOf(t, added+"-amd64"); len(r.Debs) != 1 || r.Debs[0].Name != "lists-new" {
		t.Errorf("resolved %+v; want lists-new", r.Debs)
	}
}
