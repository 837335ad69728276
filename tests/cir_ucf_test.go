package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Files a postinst installs with ucf, hermetic: a package whose postinst
// calls `ucf [options] NEW DEST` with a literal template, and with a
// temporary file filled from a template (r-base-core's way, with an edit
// the lazy-builder cannot run), and once with an argument only the running
// script knows. The assembled image has DEST with NEW's bytes, mode as ucf
// leaves it, times at the epoch, on the alternatives layer (which the
// closure makes for ucf alone: it registers no alternatives), /lib under
// /usr on the merged-/usr base; the unreadable call makes nothing.
func TestCIRDeployUcf(t *testing.T) {
	repoDir := t.TempDir()
	const mainConf = "# ucfconf main configuration\nlevel = 3\n"
	const envTemplate = "HOST=@HOST@\nMODE=template\n"
	deb(t, repoDir, "ucfconf", "1.0", "amd64", "", map[string]string{
		"usr/share/ucfconf/main.conf":    mainConf,
		"usr/share/ucfconf/env.template": envTemplate,
		"usr/share/ucfconf/tool.conf":    "tool\n",
		"DEBIAN/postinst": "#!/bin/sh\nset -e\n" +
			"if [ \"$1\" = configure ]; then\n" +
			"  ucf --three-way --debconf-ok /usr/share/ucfconf/main.conf /etc/ucfconf/main.conf\n" +
			"fi\n" +
			"tmp=$(mktemp)\n" +
			"chmod 0640 \"$tmp\"\n" +
			"cat /usr/share/ucfconf/env.template > \"$tmp\"\n" +
			"sed -i -e \"s/@HOST@/$(hostname)/\" \"$tmp\"\n" +
			"ucf \"$tmp\" /etc/ucfconf/env >/dev/null\n" +
			"ucfr ucfconf /etc/ucfconf/env\n" +
			"rm -f \"$tmp\"\n" +
			"TOOL=/usr/share/ucfconf/tool.conf\n" +
			"ucf -s /usr/share/ucfconf \"$TOOL\" /lib/ucfconf/tool.conf\n" +
			"ucf \"$2\" /etc/ucfconf/unknown\n",
	})
	repo := aptRepo(t, repoDir)
	base := baseWithSources(t, "localucf", "deb [trusted=yes] "+repo+" ./\n")

	ref := env.registry + "/cir/ucfapp:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"ucfconf"}}), "--platform", "linux/amd64", "-t", ref, "--push")
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	img := remoteImage(t, ref+"-amd64")
	rec, cells := fieldCells(t, img)
	// The package's layer, then the layer of its ucf files.
	if strings.Join(cells, " ") != "0,0 0,1 2,0" || strings.Join(rec.Allotments[1].Dst, " ") != "/etc/ucfconf/env /etc/ucfconf/main.conf /usr/lib/ucfconf/tool.conf" {
		t.Fatalf("assembled field: cells %v, %+v", cells, rec.Allotments)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.History[len(cfg.History)-2].CreatedBy; h != "2dfs cir alternatives: 0 links, 3 files from ucf" {
		t.Errorf("history of the layer: %q", h)
	}
	entries, _ := readLayer(t, img, rec.BaseLayers+1)
	for _, want := range []struct {
		path, data string
		mode       int64
	}{
		{"/etc/ucfconf/main.conf", mainConf, 0o644},     // cp -p: the template's mode
		{"/etc/ucfconf/env", envTemplate, 0o640},        // the chmod of the temporary file
		{"/usr/lib/ucfconf/tool.conf", "tool\n", 0o644}, // /lib under /usr
	} {
		e, ok := entries[want.path]
		if !ok {
			t.Errorf("%s is not in the layer (%d entries)", want.path, len(entries))
			continue
		}
		if string(e.data) != want.data || e.hdr.Mode&0o7777 != want.mode || e.hdr.Uid != 0 || e.hdr.Gid != 0 || e.hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: %q mode %o owner %d:%d time %s, want %q mode %o root, epoch", want.path, e.data, e.hdr.Mode, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime, want.data, want.mode)
		}
	}
	if _, ok := entries["/etc/ucfconf/unknown"]; ok {
		t.Errorf("the call with \"$2\" made /etc/ucfconf/unknown")
	}
	if _, ok := entries["/lib"]; ok {
		t.Errorf("the layer has a /lib folder, which hides the merged-/usr base's /lib symlink")
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-amd64")...)
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-amd64", fmt.Sprintf("ucf%d", os.Getpid()), "/bin/sh", "-c", "cat /etc/ucfconf/main.conf /lib/ucfconf/tool.conf")...)
	if got != mainConf+"tool\n" {
		t.Errorf("the running image read %q", got)
	}
}

// Against the real Debian archive: R reads /etc/R/Renviron, which
// r-base-core's postinst makes with ucf from /usr/lib/R/etc/Renviron.ucf
// through a temporary file. A CIR with r-base-core assembled for
// linux/amd64 runs Rscript with containerd, without R_ENVIRON: R finds its
// Renviron (no "cannot find system Renviron") and the variables it sets
// (R_SYSTEM_ABI). Skips, saying so, when the archive cannot be reached.
func TestCIRDebianR(t *testing.T) {
	needDebianArchive(t)
	base := debianBase(t)

	ref := env.registry + "/cir/rbase:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{"r-base-core"}}), "--platform", "linux/amd64", "-t", ref, "--push")
	start := time.Now()
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	t.Logf("r-base-core: %d packages, deploy %s", len(resolvedOf(t, ref+"-amd64").Debs), time.Since(start).Round(time.Second))

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-amd64")...)
	// ctr's output holds the container's stdout and stderr, where R warns.
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-amd64", fmt.Sprintf("r%d", os.Getpid()),
		"Rscript", "-e", `cat(R.version.string, Sys.getenv("R_HOME"), "\n")`, "-e", `cat(Sys.getenv("R_SYSTEM_ABI"), "\n")`)...)
	t.Logf("Rscript printed %q", got)
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "R version 4.") || !strings.HasSuffix(strings.TrimSpace(lines[0]), " /usr/lib/R") {
		t.Fatalf("Rscript printed %q, want the version and R_HOME alone", got)
	}
	// Renviron sets what R CMD INSTALL and the zip, tar and make helpers
	// read (R_SYSTEM_ABI, R_ZIPCMD, TAR, MAKE...); without it they are unset.
	if strings.TrimSpace(lines[1]) != "linux,gcc,gxx,gfortran,gfortran" {
		t.Errorf("R_SYSTEM_ABI is %q: Renviron was not read", lines[1])
	}
}
