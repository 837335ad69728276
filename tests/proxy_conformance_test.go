package tests

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// conformance runs the pinned OCI distribution-spec conformance test
// binary (hack/tools.sh builds it with go test -c) against a plain-HTTP
// registry at addr, in repositories of its own, and returns the status of
// how often each test name got each status ("Pass", "FAIL", "Skip",
// "Disabled").
func conformance(t *testing.T, addr, repoPrefix string) map[string]map[string]int {
	t.Helper()
	results := t.TempDir()
	cmd := exec.Command(filepath.Join(env.tools, "conformance.test"), "-test.v")
	cmd.Dir = results
	cmd.Env = append(cmd.Environ(),
		"OCI_REGISTRY="+addr,
		"OCI_TLS=disabled",
		"OCI_REPO1="+repoPrefix+"/repo1",
		"OCI_REPO2="+repoPrefix+"/repo2",
		"OCI_RESULTS_DIR="+results,
		"OCI_LOG=error",
	)
	// The binary exits non-zero when any test fails; the registry itself
	// fails some (no referrers API, no sha512), so read the report.
	out, _ := cmd.CombinedOutput()
	// A name can repeat (the same step in several workflows, in an order
	// that varies between runs): count the statuses of each name.
	status := map[string]map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := statusLine.FindStringSubmatch(line); m != nil {
			if status[m[1]] == nil {
				status[m[1]] = map[string]int{}
			}
			status[m[1]][m[2]]++
		}
	}
	if len(status) < 100 {
		t.Fatalf("conformance against %s reported %d tests:\n%s", addr, len(status), out)
	}
	return status
}

// TestProxyConformance runs the OCI distribution-spec conformance suite
// against the real registry and against the proxy in front of it: the
// proxy must pass every test the registry passes.
func TestProxyConformance(t *testing.T) {
	px := startProxy(t, env.registry)
	direct := conformance(t, env.registry, "conformance-direct")
	proxied := conformance(t, px.addr, "conformance-proxied")

	var passed, lost, gained []string
	for name, st := range direct {
		for i := 0; i < st["Pass"]; i++ {
			passed = append(passed, name)
		}
		if n := proxied[name]["Pass"]; n < st["Pass"] {
			lost = append(lost, fmt.Sprintf("%s: passes %d times directly, %d through the proxy (%v)", name, st["Pass"], n, proxied[name]))
		}
	}
	for name, st := range proxied {
		if st["Pass"] > direct[name]["Pass"] {
			gained = append(gained, name)
		}
	}
	sort.Strings(lost)
	// The suite must have exercised the registry for real: pulls, pushes,
	// manifests and tags, not a handful of pings.
	if len(passed) < 300 {
		t.Fatalf("the registry passed only %d conformance tests directly", len(passed))
	}
	for _, must := range []string{"OCI Conformance Test/ping", "OCI Conformance Test/sha256 blobs"} {
		if direct[must]["Pass"] == 0 {
			t.Errorf("the registry does not pass %q directly: %v", must, direct[must])
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d conformance tests pass against the registry but not through the proxy:\n%s", len(lost), strings.Join(lost, "\n"))
	}
	if len(proxied) != len(direct) {
		t.Errorf("%d tests through the proxy, %d directly", len(proxied), len(direct))
	}
	t.Logf("conformance: %d test names, %d passes directly, all of them through the proxy; more passes through the proxy for %v", len(direct), len(passed), gained)
}
