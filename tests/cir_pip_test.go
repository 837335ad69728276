package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A CIR whose index needs an Authorization header (pipAuthSecret): the
// index answers 401 to anything without it. Deploy without the secret
// fails naming the index and the secret, with a wrong one it names the
// index's answer, one ending with a line break is refused, with the right one (2dfs deploy --secret, as buildctl)
// the resolution in the helper and buildkitd's wheel fetches both send it,
// and the token is in no blob of the image nor in deploy's output.
func TestCIRDeployPipAuth(t *testing.T) {
	base := debianBase(t)
	const token = "Bearer 2dfs-e2e-pip-token-5f1c9a"
	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	add(wheel(t, "purepkg", "2.0", "py3-none-any", map[string]string{"purepkg/__init__.py": "NAME = 'behind auth'\n"}, nil, ""))
	add(wheel(t, "mypkg", "1.0", "py3-none-manylinux2014_x86_64", map[string]string{"mypkg/__init__.py": "import purepkg\nVALUE = 'auth ' + purepkg.NAME\n"}, []string{"purepkg>=2"}, ""))
	ix := startAuthPipIndex(t, files, token)
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	writeFile(t, good, []byte(token))
	wrong := filepath.Join(dir, "wrong")
	writeFile(t, wrong, []byte("Bearer not-the-token"))
	echoed := filepath.Join(dir, "echoed")
	writeFile(t, echoed, []byte(token+"\n"))

	ref := env.registry + "/cir/authapp:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"mypkg==1.0"}, "pipIndex": ix.URL, "pipAuthSecret": "pypi-token"}), "-t", ref, "--push")
	noauth := env.registry + "/cir/authapp:noauth"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"mypkg==1.0"}, "pipIndex": ix.URL}), "-t", noauth, "--push")

	for _, tc := range []struct {
		name, ref string
		args      []string
		want      string
	}{
		{"no secret given", ref, nil,
			`pip: the CIR's index ` + ix.URL + ` needs the BuildKit secret "pypi-token" (its pipAuthSecret), which this deploy was not given; pass it with --secret id=pypi-token,src=FILE`},
		{"wrong secret", ref, []string{"--secret", "id=pypi-token,src=" + wrong},
			`pip: index ` + ix.URL + ` answered 401 Unauthorized to the Authorization header of the secret "pypi-token"; check the secret's value`},
		{"secret with a line break", ref, []string{"--secret", "id=pypi-token,src=" + echoed},
			`pip: the secret "pypi-token" for the index ` + ix.URL + ` holds a line break, which an Authorization header cannot carry`},
		{"no pipAuthSecret", noauth, nil,
			`pip: index ` + ix.URL + ` answered 401 Unauthorized; an index that needs credentials is named with "pipAuthSecret"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := deploy(t, append([]string{tc.ref, "--platform", "linux/amd64", "-t", tc.ref + "-bad", "--push"}, tc.args...)...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("deploy: %v, want %q in\n%s", err, tc.want, out)
			}
			if _, err := remote.Head(reference(t, tc.ref+"-bad")); err == nil {
				t.Errorf("a failed deploy pushed %s-bad", tc.ref)
			}
		})
	}

	out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push", "--secret", "id=pypi-token,src="+good)
	if err != nil {
		t.Fatalf("deploy with the secret: %v\n%s", err, out)
	}
	if got := wheelVersions(resolvedOf(t, ref+"-amd64")); got != "mypkg==1.0 purepkg==2.0" {
		t.Errorf("resolved %q", got)
	}
	ix.mu.Lock()
	fetched := ix.fetches["mypkg-1.0-py3-none-manylinux2014_x86_64.whl"]
	ix.mu.Unlock()
	if fetched == 0 {
		t.Errorf("buildkitd never fetched the wheel from the index with the header")
	}

	// The token is in no blob: manifest, config, every layer compressed
	// and uncompressed; nor in what deploy printed.
	secretParts := []string{token, strings.TrimPrefix(token, "Bearer ")}
	check := func(what string, data []byte) {
		t.Helper()
		for _, s := range secretParts {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds the token", what)
			}
		}
	}
	check("deploy's output", []byte(out))
	img := remoteImage(t, ref+"-amd64")
	m, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	check("the manifest", m)
	c, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	check("the config", c)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		for _, open := range []func() (io.ReadCloser, error){l.Compressed, l.Uncompressed} {
			rc, err := open()
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("layer %d", i), data)
		}
	}

	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", ref+"-amd64")...)
	if got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", ref+"-amd64", fmt.Sprintf("auth%d", os.Getpid()))...); strings.TrimSpace(got) != "app auth behind auth" {
		t.Errorf("app printed %q", got)
	}
}

// pip resolves against the distributions the base has installed: a base
// with purepkg 1.5 installed as Debian installs python3-purepkg (an
// egg-info in /usr/lib/python3/dist-packages), a CIR requiring mypkg,
// which requires purepkg>=1: the base's purepkg is used, no layer for it.
// A CIR requiring purepkg>=2: the 2.0 wheel is added in
// /usr/local/lib/python3.11/dist-packages, which comes first on Debian's
// sys.path, so it shadows the base's copy for import and for metadata.
func TestCIRDeployPipInstalled(t *testing.T) {
	debian := debianBase(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "site/purepkg/__init__.py"), []byte("NAME = 'from the base'\n"))
	writeFile(t, filepath.Join(dir, "site/purepkg-1.5.egg-info/PKG-INFO"), []byte("Metadata-Version: 2.1\nName: purepkg\nVersion: 1.5\n"))
	writeFile(t, filepath.Join(dir, "site/purepkg-1.5.egg-info/top_level.txt"), []byte("purepkg\n"))
	desc, err := json.Marshal(map[string]any{
		"base":       debian,
		"allotments": []map[string]any{{"src": "site", "dst": "/usr/lib/python3/dist-packages", "row": 0, "col": 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "2dfs.json"), desc)
	base := env.registry + "/cir/base-with-purepkg:v1"
	build(t, env.buildkit, dir, "--platform", "linux/amd64", "-t", base, "--push")

	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	for _, v := range []string{"1.0", "2.0"} {
		add(wheel(t, "purepkg", v, "py3-none-any", map[string]string{"purepkg/__init__.py": "NAME = 'wheel " + v + "'\n"}, nil, ""))
	}
	add(wheel(t, "mypkg", "1.0", "py3-none-any", map[string]string{"mypkg/__init__.py": "import purepkg\nVALUE = 'installed ' + purepkg.NAME\n"}, []string{"purepkg>=1"}, ""))
	ix := startPipIndex(t, files)
	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	probe := "import importlib.metadata as m, purepkg; print(purepkg.NAME, m.version('purepkg'), purepkg.__file__)"

	satisfied := env.registry + "/cir/installed:satisfied"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"mypkg==1.0"}, "pipIndex": ix.URL}), "-t", satisfied, "--push")
	if out, err := deploy(t, satisfied, "--platform", "linux/amd64", "-t", satisfied+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if got := wheelVersions(resolvedOf(t, satisfied+"-amd64")); got != "mypkg==1.0" {
		t.Errorf("resolved %q on a base with purepkg 1.5, want mypkg==1.0 alone", got)
	}
	if n := len(layers(t, satisfied+"-amd64")); n != 4 {
		t.Errorf("%d layers, want 4: debian, the base's purepkg, mypkg, the app", n)
	}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", satisfied+"-amd64")...)
	id := fmt.Sprintf("inst%d", os.Getpid())
	if got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", satisfied+"-amd64", id)...); strings.TrimSpace(got) != "app installed from the base" {
		t.Errorf("app printed %q", got)
	}

	newer := env.registry + "/cir/installed:newer"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"purepkg>=2"}, "pipIndex": ix.URL}), "-t", newer, "--push")
	if out, err := deploy(t, newer, "--platform", "linux/amd64", "-t", newer+"-amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if got := wheelVersions(resolvedOf(t, newer+"-amd64")); got != "purepkg==2.0" {
		t.Errorf("resolved %q for purepkg>=2 on a base with purepkg 1.5, want purepkg==2.0", got)
	}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", newer+"-amd64")...)
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", newer+"-amd64", id+"n", "python3", "-c", probe)...)
	if strings.TrimSpace(got) != "wheel 2.0 2.0 /usr/local/lib/python3.11/dist-packages/purepkg/__init__.py" {
		t.Errorf("purepkg in the assembled image: %q, want the wheel's 2.0 shadowing the base's 1.5", got)
	}
}

// Environment markers of transitive requirements are evaluated for the
// target, not for the build host the helper runs on: plat requires armonly
// on aarch64 and x86only (on no index) on x86_64; assembled for linux/arm64
// on this amd64 host, the closure has armonly and not x86only.
func TestCIRDeployPipTargetMarkers(t *testing.T) {
	base := debianBase(t)
	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	add(wheel(t, "plat", "1.0", "py3-none-any", map[string]string{"plat/__init__.py": ""},
		[]string{`armonly; platform_machine == "aarch64"`, `x86only; platform_machine == "x86_64"`}, ""))
	add(wheel(t, "armonly", "1.0", "py3-none-manylinux2014_aarch64", map[string]string{"armonly/__init__.py": ""}, nil, ""))
	ix := startPipIndex(t, files)
	ref := env.registry + "/cir/markers:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"plat"}, "pipIndex": ix.URL}), "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push")
	if out, err := deploy(t, ref, "--platform", "linux/arm64", "-t", ref+"-arm64", "--push"); err != nil {
		t.Fatalf("deploy for arm64: %v\n%s", err, out)
	}
	if got := wheelVersions(resolvedOf(t, ref+"-arm64")); got != "armonly==1.0 plat==1.0" {
		t.Errorf("resolved %q for arm64, want armonly==1.0 plat==1.0", got)
	}
	out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push")
	if want := "pip: no wheel for linux/amd64 (Python 3.11) on " + ix.URL + " for: x86only (via plat 1.0)"; err == nil || !strings.Contains(out, want) {
		t.Errorf("deploy for amd64: %v, want %q in\n%s", err, want, out)
	}
}
