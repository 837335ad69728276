package tests

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// baseWithFiles pushes the amd64 Debian base with one more layer: apt
// sources of one line, the files given (a "" content is a whiteout: the
// base's file is gone).
func baseWithFiles(t *testing.T, tag, sources string, files map[string]string) string {
	t.Helper()
	debianBase(t)
	layer := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(layer)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	all := map[string]string{"etc/apt/sources.list": sources}
	for p, c := range files {
		if c == "" {
			p = filepath.Join(filepath.Dir(p), ".wh."+filepath.Base(p))
		}
		all[p] = c
	}
	var names []string
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(all[p])), ModTime: time.Unix(0, 0)})
		tw.Write([]byte(all[p]))
	}
	tw.Close()
	f.Close()
	ref := env.registry + "/debian:" + tag
	runCmd(t, "", filepath.Join(env.tools, "crane"), "append", "--insecure", "-b", debianRef+"-amd64", "-f", layer, "-t", ref)
	return ref
}

// packageLayer deploys a CIR of the apt package pkg on base for amd64 and
// returns the entries of the package's layer (cell 0,0) and its blob.
func packageLayer(t *testing.T, base, name, pkg string) (map[string]tarEntry, string) {
	t.Helper()
	ref := env.registry + "/cir/" + name + ":v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"apt": []string{pkg}}), "--platform", "linux/amd64", "-t", ref, "--push")
	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	img := remoteImage(t, ref+"-amd64")
	rec, _ := fieldCells(t, img)
	for _, a := range rec.Allotments {
		if a.Row == 0 && a.Col == 0 {
			entries, _ := readLayer(t, img, a.Layer)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			return entries, m.Layers[a.Layer].Digest.String()
		}
	}
	t.Fatalf("%s: no package layer at 0,0", ref)
	return nil, ""
}

// under lists the entries of a layer under the prefixes, sorted, folders
// with a trailing "/".
func under(entries map[string]tarEntry, prefixes ...string) []string {
	var out []string
	for p, e := range entries {
		for _, pre := range prefixes {
			if p == pre || strings.HasPrefix(p, pre+"/") {
				if e.hdr.Typeflag == tar.TypeDir {
					p += "/"
				}
				out = append(out, p)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// The lazy-builder unpacks a package as dpkg would in the base: the base's
// dpkg path-exclude and path-include (here: docs out, copyright files
// kept) leave the same files out of the package's layer, and apt-get
// install in that base (run with containerd) leaves the same files; the
// base without the configuration gets every file. The same package for the
// same base is the same layer in two applications.
func TestCIRDeployDpkgFilters(t *testing.T) {
	repoDir := t.TempDir()
	deb(t, repoDir, "cirdoc", "1.0", "amd64", "", map[string]string{
		"usr/bin/cirdoc":                         "#!/bin/sh\necho cirdoc\n",
		"usr/share/cirdoc/data.txt":              "data\n",
		"usr/share/doc/cirdoc/copyright":         "copyright\n",
		"usr/share/doc/cirdoc/README":            "readme\n",
		"usr/share/doc/cirdoc/examples/ex.txt":   "example\n",
		"usr/share/doc/cirdoc/changelog.Debian":  "changes\n",
		"usr/share/man/man1/cirdoc.1":            "manual\n",
		"usr/share/locale/de/LC_MESSAGES/cirdoc": "de\n",
		// Two slave links: to a file the filters leave out and to one
		// they keep; update-alternatives makes only the second.
		"DEBIAN/postinst": "#!/bin/sh\nset -e\nupdate-alternatives --install /usr/bin/cirdoc-alt cirdoc-alt /usr/bin/cirdoc 10" +
			" --slave /usr/share/man/man1/cirdoc-alt.1 cirdoc-alt.1 /usr/share/doc/cirdoc/README" +
			" --slave /usr/lib/cirdoc-copyright cirdoc-copyright /usr/share/doc/cirdoc/copyright\n",
	})
	repo := aptRepo(t, repoDir)
	sources := "deb [trusted=yes] " + repo + " ./\n"
	// The slim variant's /etc/dpkg/dpkg.cfg.d/docker (hack/debian-base)
	// gives way to the test's configuration, or to nothing.
	filtered := baseWithFiles(t, "dpkgfilters", sources, map[string]string{
		"etc/dpkg/dpkg.cfg.d/docker": "# docs out, copyright kept\npath-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n",
	})
	plain := baseWithFiles(t, "dpkgnofilters", sources, map[string]string{"etc/dpkg/dpkg.cfg.d/docker": ""})

	files, blob := packageLayer(t, filtered, "dpkgfilters", "cirdoc")
	// The package's own paths (the base has the folders above them).
	paths := []string{"/usr/bin/cirdoc", "/usr/share/cirdoc", "/usr/share/doc/cirdoc", "/usr/share/man/man1/cirdoc.1", "/usr/share/locale/de/LC_MESSAGES/cirdoc"}
	got := under(files, paths...)
	want := []string{
		"/usr/bin/cirdoc", "/usr/share/cirdoc/", "/usr/share/cirdoc/data.txt",
		// Folders under an include's fixed part stay, as dpkg keeps them.
		"/usr/share/doc/cirdoc/", "/usr/share/doc/cirdoc/copyright", "/usr/share/doc/cirdoc/examples/",
		"/usr/share/locale/de/LC_MESSAGES/cirdoc", "/usr/share/man/man1/cirdoc.1",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("package layer with the base's filters:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The alternatives layer has no link to the file the filters left out.
	altFiltered := []string{"/etc/alternatives/cirdoc-alt", "/etc/alternatives/cirdoc-copyright", "/usr/bin/cirdoc-alt", "/usr/lib/cirdoc-copyright"}
	if got := alternativesLinks(t, env.registry+"/cir/dpkgfilters:v1-amd64"); strings.Join(got, " ") != strings.Join(altFiltered, " ") {
		t.Errorf("alternatives with the base's filters: %v, want %v", got, altFiltered)
	}

	// Another application, the same package and base: the same layer.
	if _, again := packageLayer(t, filtered, "dpkgfilters2", "cirdoc"); again != blob {
		t.Errorf("cirdoc for the same base: layer %s, then %s", blob, again)
	}

	all, plainBlob := packageLayer(t, plain, "dpkgnofilters", "cirdoc")
	gotAll := under(all, paths...)
	wantAll := append(append([]string{}, want...), "/usr/share/doc/cirdoc/README", "/usr/share/doc/cirdoc/changelog.Debian", "/usr/share/doc/cirdoc/examples/ex.txt")
	sort.Strings(wantAll)
	if strings.Join(gotAll, " ") != strings.Join(wantAll, " ") {
		t.Errorf("package layer without filters:\n%s\nwant:\n%s", strings.Join(gotAll, "\n"), strings.Join(wantAll, "\n"))
	}
	if plainBlob == blob {
		t.Errorf("the layers with and without filters are the same blob %s", blob)
	}
	altAll := []string{"/etc/alternatives/cirdoc-alt", "/etc/alternatives/cirdoc-alt.1", "/etc/alternatives/cirdoc-copyright", "/usr/bin/cirdoc-alt", "/usr/lib/cirdoc-copyright", "/usr/share/man/man1/cirdoc-alt.1"}
	if got := alternativesLinks(t, env.registry+"/cir/dpkgnofilters:v1-amd64"); strings.Join(got, " ") != strings.Join(altAll, " ") {
		t.Errorf("alternatives without filters: %v, want %v", got, altAll)
	}

	// A filter dpkg would stop on stops the deploy, naming the file and
	// line; nothing is pushed.
	broken := baseWithFiles(t, "dpkgbroken", sources, map[string]string{"etc/dpkg/dpkg.cfg.d/docker": "# no pattern\npath-exclude\n"})
	bad := env.registry + "/cir/dpkgbroken:v1"
	build(t, env.buildkit, cirContext(t, broken, map[string]any{"apt": []string{"cirdoc"}}), "--platform", "linux/amd64", "-t", bad, "--push")
	if out, err := deploy(t, bad, "--platform", "linux/amd64", "-t", bad+"-amd64", "--push"); err == nil || !strings.Contains(out, "the base's /etc/dpkg/dpkg.cfg.d/docker:2: path-exclude needs a pattern") {
		t.Errorf("deploy on a base with a broken dpkg filter: %v\n%s", err, out)
	}
	if _, err := remote.Head(reference(t, bad+"-amd64")); err == nil {
		t.Errorf("a failed deploy pushed %s", bad+"-amd64")
	}

	// What apt-get install in the filtered base leaves, run with
	// containerd on the host's network (the repository is on 127.0.0.1).
	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", filtered)...)
	out := runCmd(t, "", "ctr", append(ctr, "run", "--rm", "--net-host", filtered, fmt.Sprintf("dpkgf%d", os.Getpid()),
		"/bin/sh", "-c", "{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y cirdoc; } >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }; "+
			"find "+strings.Join(paths, " ")+" -type d -printf '%p/\\n' -o -print 2>/dev/null | sort; "+
			"echo alternatives; find "+strings.Join(altAll, " ")+" -type l 2>/dev/null | sort; "+
			"echo debs $(ls /var/cache/apt/archives | grep -c '[.]deb$')")...)
	// The base's docker-clean (hack/debian-base, as debian:bookworm-slim)
	// has apt remove the .debs it fetched: a fat image does not keep them.
	if !strings.HasSuffix(strings.TrimSpace(out), "debs 0") {
		t.Errorf("apt-get install in the base kept .debs in /var/cache/apt/archives:\n%s", out)
	}
	out = strings.TrimSuffix(strings.TrimSpace(out), "debs 0")
	out, alts, _ := strings.Cut(out, "alternatives")
	if strings.Join(strings.Fields(out), " ") != strings.Join(want, " ") {
		t.Errorf("apt-get install in the base left:\n%s\nthe package layer:\n%s", out, strings.Join(want, "\n"))
	}
	if strings.Join(strings.Fields(alts), " ") != strings.Join(altFiltered, " ") {
		t.Errorf("update-alternatives in the base made:\n%s\nthe alternatives layer:\n%s", alts, strings.Join(altFiltered, "\n"))
	}
}

// alternativesLinks lists the paths of the alternatives layer of an
// assembled image: the allotment that makes /etc/alternatives entries.
func alternativesLinks(t *testing.T, ref string) []string {
	t.Helper()
	rec, _ := fieldCells(t, remoteImage(t, ref))
	for _, a := range rec.Allotments {
		for _, d := range a.Dst {
			if strings.HasPrefix(d, "/etc/alternatives/") {
				return a.Dst
			}
		}
	}
	t.Fatalf("%s: no alternatives layer", ref)
	return nil
}
