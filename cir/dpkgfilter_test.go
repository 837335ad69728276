package cir

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestParseDpkgConfig(t *testing.T) {
	cfg := "# comment\n\nno-debsig\nlog /var/log/dpkg.log\n" +
		"path-exclude /usr/share/doc/*\n" +
		"path-include=/usr/share/doc/*/copyright\n" +
		"path-exclude = \"/usr/share/man/*\"  \n" +
		"path-exclude\t'/usr/share/a b'\n" +
		"path-include =\n" +
		"  path-exclude /indented\n" + // dpkg reads no option name here
		"#path-exclude /commented\n" +
		"path-excluded /other-option\n"
	got, err := ParseDpkgConfig("dpkg.cfg", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	want := DpkgFilters{
		{Pattern: "/usr/share/doc/*"},
		{Include: true, Pattern: "/usr/share/doc/*/copyright"},
		{Pattern: "/usr/share/man/*"},
		{Pattern: "/usr/share/a b"},
		{Include: true, Pattern: ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if env := got[:3].Env(); env != "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\n" {
		t.Errorf("Env: %q", env)
	}
	for _, c := range []struct{ cfg, err string }{
		{"no-debsig\npath-exclude\n", "docker:2: path-exclude needs a pattern"},
		{"path-include   \n", "docker:1: path-include needs a pattern"},
		{"path-exclude \"/usr/share/doc/*\n", `docker:1: unbalanced quotes in "path-exclude \"/usr/share/doc/*"`},
	} {
		if _, err := ParseDpkgConfig("docker", []byte(c.cfg)); err == nil || err.Error() != c.err {
			t.Errorf("%q: error %v, want %s", c.cfg, err, c.err)
		}
	}
}

func TestDpkgConfigOrder(t *testing.T) {
	got := DpkgConfigOrder([]string{"docker", "docker-apt-speedup", ".hidden", "excludes.conf", "Zz", "a_b", "docker.dpkg-old", "10local"})
	if strings.Join(got, " ") != "10local Zz a_b docker docker-apt-speedup" {
		t.Errorf("order %v", got)
	}
}

// slimConfig is the dpkg configuration of the official debian:*-slim images
// (debuerreotype-slimify), without its comments.
const slimConfig = `path-exclude /usr/share/doc/*
path-exclude /usr/share/doc/kde/HTML/*/*
path-exclude /usr/share/gnome/help/*/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/omf/*/*-*.emf
path-include /usr/share/doc/*/copyright
path-include /usr/share/doc/kde/HTML/C/*
path-include /usr/share/gnome/help/*/C/*
path-include /usr/share/locale/all_languages
path-include /usr/share/locale/currency/*
path-include /usr/share/locale/l10n/*
path-include /usr/share/locale/languages
path-include /usr/share/locale/locale.alias
path-include /usr/share/omf/*/*-C.emf
`

// filterPackage makes a .deb with files, empty folders and symlinks in the
// places dpkg filters are about, and names with glob characters.
func filterPackage(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "pkg")
	files := map[string]string{
		"DEBIAN/control":                         "Package: cirfilter\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: t\n",
		"usr/bin/cirfilter":                      "bin\n",
		"usr/share/doc/cirfilter/copyright":      "c\n",
		"usr/share/doc/cirfilter/changelog.gz":   "log\n",
		"usr/share/doc/cirfilter/ex/a/copyright": "deep copyright: * matches /\n",
		"usr/share/doc/cirfilter/ex/a/b.txt":     "b\n",
		"usr/share/man/man1/cirfilter.1.gz":      "m\n",
		"usr/share/man/de/man1/cirfilter.1.gz":   "m\n",
		"usr/share/locale/de/LC_MESSAGES/c.mo":   "mo\n",
		"usr/share/locale/locale.alias":          "alias\n",
		"usr/share/cirfilter/[x]name":            "brackets\n",
		"usr/share/cirfilter/a?b":                "question\n",
		"usr/share/cirfilter/.hidden":            "hidden\n",
		"etc/cirfilter.conf":                     "conf\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"usr/share/emptydir", "usr/share/doc/cirfilter/emptysub", "usr/share/man/man8"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"usr/share/doc/cirfilter-dev":      "cirfilter",                // to a folder
		"usr/share/doc/cirfilter/NEWS.gz":  "changelog.gz",             // to a file
		"usr/share/man/man1/cf.1.gz":       "cirfilter.1.gz",           // no include under man
		"usr/share/cirfilter/link-to-hide": "/usr/share/cirfilter/a?b", // absolute
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "cirfilter.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, out)
	}
	return deb
}

// tree lists root's entries below it as "path type" lines, sorted; links
// with their targets.
func tree(t *testing.T, root string, skip string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if rel == skip {
			return filepath.SkipDir
		}
		switch m := info.Mode(); {
		case m&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, "/"+rel+" -> "+target)
		case m.IsDir():
			out = append(out, "/"+rel+"/")
		default:
			out = append(out, "/"+rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// filterScript runs dpkgfilter.py on a dpkg-deb -x of deb with filters.
func filterScript(t *testing.T, deb string, filters DpkgFilters) []string {
	t.Helper()
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	cmd := exec.Command("python3", "dpkgfilter.py", x)
	cmd.Env = append(os.Environ(), "DPKG_FILTERS="+filters.Env())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkgfilter.py: %v\n%s", err, out)
	}
	return tree(t, x, "")
}

// The filtering deb.sh applies, against the rules in the docs: the brief's
// exclude of docs with their copyright files kept.
func TestDpkgFilterScript(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (the helper image has it)", tool)
		}
	}
	deb := filterPackage(t, t.TempDir())
	all := filterScript(t, deb, nil)
	filters, err := ParseDpkgConfig("test", []byte("path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := filterScript(t, deb, filters)
	var gone []string
	kept := map[string]bool{}
	for _, p := range got {
		kept[p] = true
	}
	for _, p := range all {
		if !kept[p] {
			gone = append(gone, p)
		}
	}
	// Files under /usr/share/doc go but for the copyright files (at any
	// depth: * matches /); folders and symlinks there stay, as an include
	// may need them (dpkg keeps them too); nothing else is touched.
	want := []string{"/usr/share/doc/cirfilter/changelog.gz", "/usr/share/doc/cirfilter/ex/a/b.txt"}
	if strings.Join(gone, "\n") != strings.Join(want, "\n") {
		t.Errorf("left out:\n%s\nwant:\n%s", strings.Join(gone, "\n"), strings.Join(want, "\n"))
	}
	if len(all) != len(got)+len(want) {
		t.Errorf("no filters must keep everything")
	}
	for _, p := range []string{"/usr/share/doc/cirfilter/copyright", "/usr/share/doc/cirfilter/ex/a/copyright", "/usr/share/doc/cirfilter/emptysub/", "/usr/share/doc/cirfilter-dev -> cirfilter"} {
		if !kept[p] {
			t.Errorf("%s left out", p)
		}
	}
}

// dpkg itself is the reference: the package installed by dpkg with each
// configuration (read by dpkg from $HOME/.dpkg.cfg) has exactly the files
// dpkg-deb -x and dpkgfilter.py leave with the filters ParseDpkgConfig
// reads from the same configuration.
func TestDpkgFilterScriptMatchesDpkg(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: dpkg is the reference here", tool)
		}
	}
	// The host's own filters would join each configuration.
	host := []string{DpkgConfigFile}
	if names, err := os.ReadDir(DpkgConfigDir); err == nil {
		for _, n := range names {
			host = append(host, filepath.Join(DpkgConfigDir, n.Name()))
		}
	}
	for _, f := range host {
		if dt, err := os.ReadFile(f); err == nil {
			if fs, _ := ParseDpkgConfig(f, dt); len(fs) > 0 {
				t.Skipf("the host's dpkg has path filters of its own (%s)", f)
			}
		}
	}
	dir := t.TempDir()
	deb := filterPackage(t, dir)
	for i, cfg := range []string{
		"",
		slimConfig,
		"path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n",
		// Later ones win: excluded, included, excluded again.
		"path-exclude=/usr/share/locale/*\npath-include /usr/share/locale/locale.alias\npath-exclude \"/usr/share/locale/locale.*\"\n",
		// An exact folder, glob characters in names, hidden files.
		"path-exclude /usr/share/emptydir\npath-exclude /usr/share/cirfilter/*\npath-include /usr/share/cirfilter/[[]x]*\npath-include /usr/share/cirfilter/a\\?b\n",
		"path-exclude /usr/share/cirfilter/?hidden\npath-exclude /etc/*.conf\npath-exclude /usr/share/cirfilter/link-to-hide\n",
		// The empty include keeps every folder and symlink.
		"path-exclude /usr/share/man/*\npath-include =\n",
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			home := t.TempDir()
			if err := os.WriteFile(filepath.Join(home, ".dpkg.cfg"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
				os.MkdirAll(filepath.Join(root, d), 0o755)
			}
			os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
			cmd := exec.Command("dpkg", "--root="+root, "--log=/dev/null", "--force-not-root", "--force-script-chrootless", "--no-triggers", "--unpack", deb)
			cmd.Env = append(os.Environ(), "HOME="+home)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("dpkg --unpack: %v\n%s", err, out)
			}
			want := tree(t, root, "var")
			filters, err := ParseDpkgConfig(".dpkg.cfg", []byte(cfg))
			if err != nil {
				t.Fatal(err)
			}
			got := filterScript(t, deb, filters)
			// dpkg keeps the folders of its database under /var.
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("configuration:\n%s\ndpkgfilter.py left:\n%s\ndpkg unpacked:\n%s", cfg, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
