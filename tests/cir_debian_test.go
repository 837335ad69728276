package tests

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Against the real Debian archive: a CIR with python3-numpy assembled for
// linux/amd64 resolves against the base's sources and dpkg status, and
// containerd runs numpy, which needs the libblas.so.3 and liblapack.so.3
// links libblas3 and liblapack3 make in their postinst: the alternatives
// layer. The same for linux/arm64, run under qemu user emulation. Skips,
// saying so, when the archive cannot be reached.
// needDebianArchive skips t, saying so, when the real Debian archive
// cannot be reached (the hermetic tests never skip).
func needDebianArchive(t *testing.T) {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://deb.debian.org/debian/dists/bookworm/Release")
	if err != nil {
		t.Skipf("the Debian archive cannot be reached: %v", err)
	}
	resp.Body.Close()
}

func TestCIRDebianNumpy(t *testing.T) {
	needDebianArchive(t)
	base := debianBase(t) // sources: deb.debian.org bookworm main

	dir := cirContext(t, base, map[string]any{"apt": []string{"python3-numpy"}})
	writeFile(t, dir+"/app/main.py", []byte("import numpy\nprint('numpy', numpy.__version__, int(numpy.dot(numpy.ones(3), numpy.ones(3))))\n"))
	ref := env.registry + "/cir/numpy:v1"
	build(t, env.buildkit, dir, "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push")
	start := time.Now()
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	took := time.Since(start)
	resolved := resolvedOf(t, ref+"-amd64")
	var names []string
	for _, d := range resolved.Debs {
		names = append(names, d.Name)
	}
	var cirSize, size, depSize int64
	for _, l := range layers(t, ref) {
		cirSize += l.Size
	}
	all := layers(t, ref+"-amd64")
	for i, l := range all {
		size += l.Size
		if i > 0 && i < len(all)-1 {
			depSize += l.Size
		}
	}
	t.Logf("python3-numpy closure on the base: %d packages (%s); deploy %s; CIR %d B, assembled %d B (dependency layers %d B, %d layers)",
		len(names), strings.Join(names, " "), took.Round(time.Second), cirSize, size, depSize, len(all))
	if !strings.Contains(" "+strings.Join(names, " ")+" ", " python3-numpy ") || strings.Contains(" "+strings.Join(names, " ")+" ", " python3 ") {
		t.Errorf("closure %v: want python3-numpy and not python3, which the base has", names)
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-amd64")...)
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-amd64", fmt.Sprintf("np%d", os.Getpid()))...)
	if !strings.HasPrefix(strings.TrimSpace(got), "numpy 1.") || !strings.HasSuffix(strings.TrimSpace(got), " 3") {
		t.Errorf("numpy printed %q", got)
	}

	// linux/arm64, resolved and unpacked on this amd64 host against the
	// arm64 base's own dpkg status (hack/debian-base bootstraps it fully
	// under qemu), run by containerd under qemu user emulation.
	t.Run("linux/arm64", func(t *testing.T) {
		start := time.Now()
		if out, err := deploy(t, ref, "--platform", "linux/arm64", "-t", ref+"-arm64", "--push"); err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		took := time.Since(start)
		cfg, err := remoteImage(t, ref+"-arm64").ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		resolved := resolvedOf(t, ref+"-arm64")
		var names []string
		for _, d := range resolved.Debs {
			names = append(names, d.Name)
			if d.Arch != "arm64" && d.Arch != "all" {
				t.Errorf("package %s %s is for %s", d.Name, d.Version, d.Arch)
			}
		}
		all := layers(t, ref+"-arm64")
		var size int64
		for _, l := range all {
			size += l.Size
		}
		t.Logf("arm64: closure %d packages (%s); deploy %s; assembled %d B, %d layers", len(names), strings.Join(names, " "), took.Round(time.Second), size, len(all))
		if cfg.Architecture != "arm64" || !strings.Contains(" "+strings.Join(names, " ")+" ", " python3-numpy ") || strings.Contains(" "+strings.Join(names, " ")+" ", " python3 ") {
			t.Errorf("arm64 image for %s, closure %v: want python3-numpy and not python3, which the base has", cfg.Architecture, names)
		}

		needEmulation(t, "arm64")
		runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", "--platform", "linux/arm64", ref+"-arm64")...)
		id := fmt.Sprintf("nparm%d", os.Getpid())
		start = time.Now()
		got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", "--platform", "linux/arm64", ref+"-arm64", id, "python3", "-c", "import numpy; print(numpy.__version__)")...)
		t.Logf("arm64 under qemu: numpy %s, imported in %s", strings.TrimSpace(got), time.Since(start).Round(100*time.Millisecond))
		if !strings.HasPrefix(strings.TrimSpace(got), "1.") {
			t.Errorf("arm64 numpy printed %q", got)
		}
		got = runCmd(t, "", "ctr", append(ctr, "run", "--rm", "--platform", "linux/arm64", ref+"-arm64", id+"m", "python3", "-c", "import platform, numpy; print(platform.machine(), int(numpy.dot(numpy.ones(3), numpy.ones(3))))")...)
		if strings.TrimSpace(got) != "aarch64 3" {
			t.Errorf("arm64 numpy computed %q, want aarch64 3 (BLAS through the alternatives links)", got)
		}
	})
}
