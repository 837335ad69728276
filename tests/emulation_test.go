package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// qemuArch is the binfmt_misc entry name of qemu-user-static for an OCI
// architecture.
var qemuArch = map[string]string{"arm64": "aarch64", "arm": "arm", "riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x"}

// emulation says why images of arch cannot run here, or "" when they can:
// the kernel must run its binaries through qemu-user-static registered in
// binfmt_misc with the F flag (the interpreter opened at registration, so
// it works inside containerd's mount namespaces). hack/tools.sh registers it.
func emulation(arch string) string {
	q, ok := qemuArch[arch]
	if !ok {
		return fmt.Sprintf("no qemu-user-static entry is known for %s", arch)
	}
	path := "/proc/sys/fs/binfmt_misc/qemu-" + q
	dt, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("no qemu user emulation for linux/%s: %s is missing (binfmt_misc not mounted or qemu-%s not registered; hack/tools.sh registers it where the kernel allows)", arch, path, q)
	}
	lines := strings.Split(string(dt), "\n")
	if lines[0] != "enabled" {
		return fmt.Sprintf("no qemu user emulation for linux/%s: %s is %s", arch, path, lines[0])
	}
	for _, l := range lines {
		if flags, ok := strings.CutPrefix(l, "flags: "); ok && strings.Contains(flags, "F") {
			return ""
		}
	}
	return fmt.Sprintf("no qemu user emulation for linux/%s in containers: %s lacks the F flag (re-register it with hack/tools.sh)", arch, path)
}

// needEmulation stops t when images of arch cannot run here: a failure
// under TDFS_E2E=require (hack/tools.sh provides the emulation), else a
// skip that says why.
func needEmulation(t *testing.T, arch string) {
	t.Helper()
	why := emulation(arch)
	if why == "" {
		return
	}
	if os.Getenv(testenv.E2EEnv) == "require" {
		t.Fatalf("%s (%s=require)", why, testenv.E2EEnv)
	}
	t.Skipf("%s; run hack/tools.sh as root", why)
}
