package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// E2EEnv names the variable that says what to do when the end-to-end
// tests cannot run here: unset, skip them with one line saying why;
// "require" (hack/test sets it), fail; "off", skip them even if they could
// run.
const E2EEnv = "TDFS_E2E"

// Missing says what this machine lacks to run the end-to-end tests: root
// (buildkitd's OCI worker, containerd) and what hack/tools.sh installs and
// builds (asked with hack/tools.sh --check). It returns "" when nothing is
// missing.
func Missing(root string) string {
	if os.Geteuid() != 0 {
		return "they need root (buildkitd's OCI worker, containerd)"
	}
	out, err := exec.Command(filepath.Join(root, "hack/tools.sh"), "--check").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("missing %s", strings.TrimSpace(string(out)))
	}
	return ""
}

// Gate decides, in a TestMain, whether the end-to-end tests run. When it
// says no, code is what TestMain exits with: 0 after one line saying why
// and how to run them, 1 when E2EEnv is "require".
func Gate(root string) (run bool, code int) {
	mode := os.Getenv(E2EEnv)
	if mode == "off" {
		fmt.Printf("end-to-end tests skipped: %s=off\n", E2EEnv)
		return false, 0
	}
	why := Missing(root)
	switch {
	case why == "":
		return true, 0
	case mode == "require":
		fmt.Fprintf(os.Stderr, "end-to-end tests cannot run (%s=require): %s\n", E2EEnv, why)
		return false, 1
	default:
		fmt.Printf("end-to-end tests skipped: %s; run them with hack/test (as root; it installs what is missing)\n", why)
		return false, 0
	}
}
