package tests

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tdfs-kit/tdfs/field"
)

// deb builds a .deb with dpkg-deb --build into dir: a control file and
// the files given, all with fixed times.
func deb(t *testing.T, dir, name, version, arch, depends string, files map[string]string) {
	t.Helper()
	root := t.TempDir()
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: 2dfs tests <t@example.com>\nDescription: test package\n", name, version, arch)
	if depends != "" {
		control += "Depends: " + depends + "\n"
	}
	writeFile(t, filepath.Join(root, "DEBIAN/control"), []byte(control))
	for p, content := range files {
		writeFile(t, filepath.Join(root, p), []byte(content))
		if strings.Contains(p, "/bin/") || p == "DEBIAN/postinst" {
			os.Chmod(filepath.Join(root, p), 0o755)
		}
	}
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", name, version, arch))
	cmd := []string{"dpkg-deb", "--root-owner-group", "--build", root, out}
	if o, err := tryCmd("", "env", append([]string{"SOURCE_DATE_EPOCH=1577836800"}, cmd...)...); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, o)
	}
}

// aptRepo serves a flat apt repository (deb [trusted=yes] URL ./) of the
// .debs in dir, indexed with dpkg-scanpackages and a Release file.
func aptRepo(t *testing.T, dir string) string {
	t.Helper()
	scan := exec.Command("dpkg-scanpackages", "--multiversion", ".", "/dev/null")
	scan.Dir = dir
	out, err := scan.Output() // stdout only: stderr says what it wrote
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("dpkg-scanpackages: %v\n%s", err, stderr)
	}
	packages := string(out)
	writeFile(t, filepath.Join(dir, "Packages"), []byte(packages))
	sum := sha256.Sum256([]byte(packages))
	release := fmt.Sprintf("Origin: 2dfs-tests\nLabel: 2dfs-tests\nSuite: stable\nCodename: cirtest\nArchitectures: amd64 arm64\nDate: %s\nSHA256:\n %s %d Packages\n",
		time.Now().UTC().Format(time.RFC1123), hex.EncodeToString(sum[:]), len(packages))
	writeFile(t, filepath.Join(dir, "Release"), []byte(release))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String() + "/"
}

// baseWithSources pushes the Debian base with its apt sources replaced by
// one line, so apt resolves against the test's repository alone.
func baseWithSources(t *testing.T, tag, line string) string {
	t.Helper()
	debianBase(t)
	layer := filepath.Join(t.TempDir(), "sources.tar")
	f, err := os.Create(layer)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "etc/apt/sources.list", Mode: 0o644, Size: int64(len(line)), ModTime: time.Unix(0, 0)})
	tw.Write([]byte(line))
	tw.Close()
	f.Close()
	ref := env.registry + "/debian:" + tag
	runCmd(t, "", filepath.Join(env.tools, "crane"), "append", "--insecure", "-b", debianRef+"-amd64", "-f", layer, "-t", ref)
	return ref
}

// fieldCells reads an image's field record and its allotments' cells, in
// record order.
func fieldCells(t *testing.T, img v1.Image) (*field.Record, []string) {
	t.Helper()
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := field.FromConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	var cells []string
	for _, a := range rec.Allotments {
		cells = append(cells, a.Cell().String())
	}
	return rec, cells
}

// The lazy-builder for apt, hermetic: a local repository with two amd64
// packages (one depending on the other and on dash, which the base has),
// resolved against the base's sources and dpkg status, each .deb fetched
// pinned by its SHA256 and unpacked into its own layer, run with
// containerd. The package's /lib goes under /usr on the merged-/usr base.
func TestCIRDeployApt(t *testing.T) {
	repoDir := t.TempDir()
	deb(t, repoDir, "libcir1", "1.0", "amd64", "", map[string]string{
		"usr/lib/x86_64-linux-gnu/libcir.txt": "lib\n",
		"lib/cir-merged.txt":                  "merged\n",
	})
	deb(t, repoDir, "hello-cir", "1.0", "amd64", "libcir1 (>= 1.0), dash", map[string]string{
		"usr/bin/hello-cir": "#!/bin/sh\necho hello-cir $(cat /usr/lib/x86_64-linux-gnu/libcir.txt) $(cat /lib/cir-merged.txt)\n",
	})
	// Two providers of one alternative (b has the higher priority, and a
	// slave link), and a call the script cannot read without running.
	deb(t, repoDir, "cirtool-a", "1.0", "amd64", "", map[string]string{
		"usr/bin/cirtool-a": "#!/bin/sh\necho a\n",
		"DEBIAN/postinst":   "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  update-alternatives --install /usr/bin/cirtool cirtool /usr/bin/cirtool-a 20\nfi\nupdate-alternatives --install /usr/bin/x x $FOO 10\n",
	})
	deb(t, repoDir, "cirtool-b", "1.0", "amd64", "", map[string]string{
		"usr/bin/cirtool-b":     "#!/bin/sh\necho b\n",
		"usr/share/cirtool-b.1": "b manual\n",
		"DEBIAN/postinst": "#!/bin/sh\nupdate-alternatives --install /usr/bin/cirtool cirtool /usr/bin/cirtool-b 50 \\\n" +
			"  --slave /usr/share/man/man1/cirtool.1 cirtool.1 /usr/share/cirtool-b.1 \\\n" +
			// A link under /lib, as cpp's /lib/cpp: on this merged-/usr
			// base it must go under /usr, or the layer's /lib folder hides
			// the base's /lib symlink and no binary starts.
			"  --slave /lib/cirtool-lib cirtool-lib /usr/share/cirtool-b.1\n",
	})
	// Fetched only by the checksum case at the end, after its bytes change.
	deb(t, repoDir, "tamper-cir", "1.0", "amd64", "", map[string]string{"usr/share/tamper-cir.txt": "before\n"})
	repo := aptRepo(t, repoDir)
	base := baseWithSources(t, "localapt", "deb [trusted=yes] "+repo+" ./\n")

	dir := cirContext(t, base, map[string]any{"apt": []string{"hello-cir", "cirtool-a", "cirtool-b"}})
	ref := env.registry + "/cir/aptapp:v1"
	build(t, env.buildkit, dir, "--platform", "linux/amd64", "-t", ref, "--push")
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	img := remoteImage(t, ref+"-amd64")
	resolved := resolvedOf(t, ref+"-amd64")
	var names []string
	for _, d := range resolved.Debs {
		names = append(names, d.Name+"="+d.Version+":"+d.Arch)
	}
	if strings.Join(names, " ") != "cirtool-a=1.0:amd64 cirtool-b=1.0:amd64 hello-cir=1.0:amd64 libcir1=1.0:amd64" {
		t.Fatalf("resolved %v: want the two packages and not dash, which the base has", names)
	}
	rec, cells := fieldCells(t, img)
	// Packages on row 0 sorted by name, the alternatives layer after them.
	if rec.BaseLayers != 2 || strings.Join(cells, " ") != "0,0 0,1 0,2 0,3 0,4 2,0" || strings.Join(rec.Allotments[4].Dst, " ") != "/etc/alternatives/cirtool /etc/alternatives/cirtool-lib /etc/alternatives/cirtool.1 /usr/bin/cirtool /usr/lib/cirtool-lib /usr/share/man/man1/cirtool.1" {
		t.Fatalf("assembled field: %d base layers, cells %v, %+v", rec.BaseLayers, cells, rec.Allotments)
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-amd64")...)
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-amd64", fmt.Sprintf("apt%d", os.Getpid()), "hello-cir")...)
	if strings.TrimSpace(got) != "hello-cir lib merged" {
		t.Errorf("hello-cir printed %q", got)
	}
	got = runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-amd64", fmt.Sprintf("alt%d", os.Getpid()), "/bin/sh", "-c", "cirtool; cat /usr/share/man/man1/cirtool.1 /lib/cirtool-lib")...)
	if strings.TrimSpace(got) != "b\nb manual\nb manual" {
		t.Errorf("the alternative with the highest priority must win: got %q", got)
	}

	// Every package apt cannot find, named at once with the platform.
	bad := env.registry + "/cir/aptbad:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"hello-cir", "nosuch-a", "nosuch-b"}}), "--platform", "linux/amd64", "-t", bad, "--push")
	out, err := deploy(t, bad, "--platform", "linux/amd64", "-t", bad+"-amd64", "--push")
	if err == nil || !strings.Contains(out, "apt: no package for linux/amd64 in the base's repositories: nosuch-a, nosuch-b") {
		t.Fatalf("deploy with unknown packages: %v\n%s", err, out)
	}

	// A .deb whose bytes changed after the index listed them: the fetch,
	// pinned by the index's SHA256, fails naming the package and its URL,
	// and nothing is pushed.
	deb(t, repoDir, "tamper-cir", "1.0", "amd64", "", map[string]string{"usr/share/tamper-cir.txt": "after, not what the index lists\n"})
	tampered := env.registry + "/cir/apttamper:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"tamper-cir"}}), "--platform", "linux/amd64", "-t", tampered, "--push")
	out, err = deploy(t, tampered, "--platform", "linux/amd64", "-t", tampered+"-amd64", "--push")
	if err == nil || !strings.Contains(out, "package tamper-cir 1.0 from "+repo+"./tamper-cir_1.0_amd64.deb: checksum mismatch, the repository listed sha256:") {
		t.Fatalf("deploy of a changed .deb: %v\n%s", err, out)
	}
	if _, err := remote.Head(reference(t, tampered+"-amd64")); err == nil {
		t.Errorf("a failed deploy pushed %s", tampered+"-amd64")
	}
}
