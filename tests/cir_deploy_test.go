package tests

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/cir"
)

var debianOnce sync.Once
var debianRef string

// debianBase pushes the python3+pip Debian base that hack/debian-base makes
// (debootstrap, cached) to the main registry, once per run.
func debianBase(t *testing.T) string {
	t.Helper()
	debianOnce.Do(func() {
		ref := env.registry + "/debian:bookworm-python"
		cmd := exec.Command(filepath.Join(env.root, "hack/debian-base"), ref, "amd64,arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/debian-base: %v\n%s", err, out)
		}
		debianRef = ref
	})
	if debianRef == "" {
		t.Fatal("no Debian base")
	}
	return debianRef
}

// wheel makes a wheel: a zip with the files, METADATA, WHEEL, RECORD and
// optional entry points, with fixed times.
func wheel(t *testing.T, name, version, tag string, files map[string]string, requires []string, entryPoints string) (string, []byte) {
	t.Helper()
	distinfo := fmt.Sprintf("%s-%s.dist-info", name, version)
	all := map[string]string{}
	for k, v := range files {
		all[k] = v
	}
	meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", name, version)
	for _, r := range requires {
		meta += "Requires-Dist: " + r + "\n"
	}
	all[distinfo+"/METADATA"] = meta
	all[distinfo+"/WHEEL"] = fmt.Sprintf("Wheel-Version: 1.0\nGenerator: 2dfs-tests\nRoot-Is-Purelib: true\nTag: %s\n", tag)
	if entryPoints != "" {
		all[distinfo+"/entry_points.txt"] = entryPoints
	}
	var names []string
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	var record strings.Builder
	for _, n := range names {
		sum := sha256.Sum256([]byte(all[n]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", n, base64.RawURLEncoding.EncodeToString(sum[:]), len(all[n]))
	}
	record.WriteString(distinfo + "/RECORD,,\n")
	all[distinfo+"/RECORD"] = record.String()
	names = append(names, distinfo+"/RECORD")
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(all[n]))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s-%s-%s.whl", name, version, tag), buf.Bytes()
}

// pipIndex is a PEP 503 simple index on loopback serving the wheels given.
// Fetches that are not pip's (buildkitd's HTTP source) get tampered bytes
// for the files named in tamper.
type pipIndex struct {
	URL string
	// auth, when set, is the Authorization header value every request
	// must carry; others get 401.
	auth    string
	files   map[string][]byte
	tamper  map[string]bool
	mu      sync.Mutex
	fetches map[string]int
	// sized counts the resolution's requests for a file's size.
	sized map[string]int
}

func startPipIndex(t *testing.T, wheels map[string][]byte) *pipIndex {
	t.Helper()
	return startAuthPipIndex(t, wheels, "")
}

// startAuthPipIndex is startPipIndex answering 401 to any request without
// the Authorization header value auth ("" for none).
func startAuthPipIndex(t *testing.T, wheels map[string][]byte, auth string) *pipIndex {
	t.Helper()
	ix := &pipIndex{auth: auth, files: wheels, tamper: map[string]bool{}, fetches: map[string]int{}, sized: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/simple/", func(w http.ResponseWriter, r *http.Request) {
		p := strings.Trim(strings.TrimPrefix(r.URL.Path, "/simple/"), "/")
		// Listed per request: a test may add a release (pipIndex.add).
		ix.mu.Lock()
		files := map[string][]byte{}
		for f, data := range ix.files {
			if strings.ToLower(strings.SplitN(f, "-", 2)[0]) == strings.ReplaceAll(p, "_", "-") {
				files[f] = data
			}
		}
		ix.mu.Unlock()
		if len(files) == 0 {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "<!DOCTYPE html><html><body>\n")
		names := make([]string, 0, len(files))
		for f := range files {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			sum := sha256.Sum256(files[f])
			// Behind credentials, mypkg's links are absolute, the others
			// relative: the resolution's proxy must carry both.
			at := ""
			if ix.auth != "" && strings.HasPrefix(f, "mypkg-") {
				at = "http://" + r.Host
			}
			fmt.Fprintf(w, "<a href=\"%s/files/%s#sha256=%s\">%s</a><br/>\n", at, f, hex.EncodeToString(sum[:]), f)
		}
		fmt.Fprint(w, "</body></html>\n")
	})
	mux.HandleFunc("/files/", func(w http.ResponseWriter, r *http.Request) {
		f := strings.TrimPrefix(r.URL.Path, "/files/")
		ix.mu.Lock()
		data, ok := ix.files[f]
		ix.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		pip := strings.Contains(r.UserAgent(), "pip/")
		// The resolution reads each wheel's size (sizes.py): neither
		// pip's fetch nor buildkitd's.
		sizes := r.UserAgent() == "2dfs-cir-sizes"
		ix.mu.Lock()
		switch {
		case sizes:
			ix.sized[f]++
		case !pip:
			ix.fetches[f]++
		}
		tampered := ix.tamper[f] && !pip
		ix.mu.Unlock()
		if tampered {
			data = append(bytes.Clone(data), "tampered"...)
		}
		w.Write(data)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ix.auth != "" && r.Header.Get("Authorization") != ix.auth {
			w.Header().Set("WWW-Authenticate", `Basic realm="2dfs tests"`)
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ix.URL = "http://" + l.Addr().String() + "/simple"
	return ix
}

// add publishes a file on the index, as a new release would be.
func (ix *pipIndex) add(name string, data []byte) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.files[name] = data
}

func deploy(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return tryCmd("", filepath.Join(env.bin, "2dfs"), append([]string{"deploy", "--addr", env.buildkit, "--progress", "plain", "--insecure"}, args...)...)
}

// The lazy-builder for pip, end to end and hermetic: a local PEP 503 index
// with a pure wheel and a platform-tagged one for x86_64 and aarch64, a
// Debian base made with debootstrap, a CIR pre-built on it, deployed for
// linux/amd64 and linux/arm64 on buildkitd and run with containerd (arm64
// under qemu user emulation). Two applications with
// the same dependencies share the wheel layers.
func TestCIRDeployPip(t *testing.T) {
	base := debianBase(t)
	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	add(wheel(t, "purepkg", "2.0", "py3-none-any", map[string]string{"purepkg/__init__.py": "NAME = 'pure'\ndef main():\n    print('purecli', NAME)\n"}, nil, "[console_scripts]\npurecli = purepkg:main\n"))
	for _, arch := range []string{"x86_64", "aarch64"} {
		add(wheel(t, "mypkg", "1.0", "py3-none-manylinux2014_"+arch, map[string]string{"mypkg/__init__.py": fmt.Sprintf("import purepkg\nVALUE = '%s ' + purepkg.NAME\n", arch)}, []string{"purepkg>=2"}, ""))
	}
	add(wheel(t, "armonly", "1.0", "py3-none-manylinux2014_aarch64", map[string]string{"armonly/__init__.py": ""}, nil, ""))
	ix := startPipIndex(t, files)

	deps := map[string]any{"pip": []string{"mypkg==1.0"}, "pipIndex": ix.URL}
	dir := cirContext(t, base, deps)
	cirRef := env.registry + "/cir/pipapp:v1"
	build(t, env.buildkit, dir, "--platform", "linux/amd64,linux/arm64", "-t", cirRef, "--push")

	out, err := deploy(t, cirRef, "--platform", "linux/amd64", "-t", env.registry+"/cir/pipapp:amd64", "--push")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	img := remoteImage(t, env.registry+"/cir/pipapp:amd64")
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rec, cells := fieldCells(t, img)
	if rec.BaseLayers != 1 || strings.Join(cells, " ") != "1,0 1,1 2,0" {
		t.Fatalf("assembled field: %d base layers, cells %v; want 1 base layer, wheels at 1,0 1,1 and the app at 2,0", rec.BaseLayers, cells)
	}
	resolved := resolvedOf(t, env.registry+"/cir/pipapp:amd64")
	if len(resolved.Wheels) != 2 || resolved.Wheels[0].Filename != "mypkg-1.0-py3-none-manylinux2014_x86_64.whl" || resolved.Wheels[1].Name != "purepkg" || resolved.Python != "3.11" {
		t.Fatalf("resolved %+v", resolved)
	}
	if _, isCIR := cfg.Config.Labels[cir.LabelKey]; isCIR || strings.Join(cfg.Config.Entrypoint, " ") != "python3 /app/main.py" || cfg.Config.WorkingDir != "/app" {
		t.Fatalf("assembled config %+v", cfg.Config)
	}

	// containerd runs it: the entrypoint imports the x86_64 wheel, which
	// imports the pure one; the console script of the pure wheel runs.
	ctr := []string{"--address", env.ctrAddr, "--namespace", "tdfs-tests"}
	runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", env.registry+"/cir/pipapp:amd64")...)
	id := fmt.Sprintf("pip%d", os.Getpid())
	got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", env.registry+"/cir/pipapp:amd64", id)...)
	if strings.TrimSpace(got) != "app x86_64 pure" {
		t.Errorf("app printed %q", got)
	}
	got = runCmd(t, "", "ctr", append(ctr, "run", "--rm", env.registry+"/cir/pipapp:amd64", id+"b", "purecli")...)
	if strings.TrimSpace(got) != "purecli pure" {
		t.Errorf("console script printed %q", got)
	}

	// inspect draws the assembled field: the wheels on row 1, the app on row 2.
	drawn := twodfs(t, "inspect", "--insecure", env.registry+"/cir/pipapp:amd64")
	if !strings.Contains(drawn, "field: 3 allotments in 3×2") || !strings.Contains(drawn, "python3.11/dist-packages") || !strings.Contains(drawn, "/app") {
		t.Errorf("inspect of the assembled image:\n%s", drawn)
	}

	// The same CIR deployed again gives the same image, byte for byte.
	if out, err := deploy(t, cirRef, "--platform", "linux/amd64", "-t", env.registry+"/cir/pipapp:amd64-again", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	d1, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := remoteImage(t, env.registry+"/cir/pipapp:amd64-again").Digest(); err != nil || d1 != d2 {
		t.Errorf("two deploys of one CIR: %s and %s (%v)", d1, d2, err)
	}

	// arm64, assembled on this amd64 host with no emulation: the aarch64
	// wheel, and the pure wheel's layer is the amd64 one.
	if out, err := deploy(t, cirRef, "--platform", "linux/arm64", "-t", env.registry+"/cir/pipapp:arm64", "--push"); err != nil {
		t.Fatalf("deploy arm64: %v\n%s", err, out)
	}
	arm := remoteImage(t, env.registry+"/cir/pipapp:arm64")
	armCfg, err := arm.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if armResolved := resolvedOf(t, env.registry+"/cir/pipapp:arm64"); armCfg.Architecture != "arm64" || len(armResolved.Wheels) != 2 || armResolved.Wheels[0].Filename != "mypkg-1.0-py3-none-manylinux2014_aarch64.whl" {
		t.Errorf("arm64 image: %s, resolved %+v", armCfg.Architecture, armResolved)
	}
	la := layers(t, env.registry+"/cir/pipapp:arm64")
	wa, wx := wheelBlobs(t, env.registry+"/cir/pipapp:arm64"), wheelBlobs(t, env.registry+"/cir/pipapp:amd64")
	if len(la) != 4 || wa["purepkg"] == "" || wa["purepkg"] != wx["purepkg"] || wa["mypkg"] == "" || wa["mypkg"] == wx["mypkg"] {
		t.Errorf("arm64 wheel layers %v\namd64 wheel layers %v: want the pure wheel shared, the platform wheel not", wa, wx)
	}
	mypkgAt := -1
	for i, l := range la {
		if l.Digest.String() == wa["mypkg"] {
			mypkgAt = i
		}
	}
	entries, _ := readLayer(t, arm, mypkgAt)
	if e, ok := entries["/usr/local/lib/python3.11/dist-packages/mypkg/__init__.py"]; !ok || !strings.Contains(string(e.data), "aarch64") || e.hdr.ModTime.Unix() != 0 || e.hdr.Mode&0o777 != 0o644 {
		t.Errorf("arm64 mypkg layer: %+v", e.hdr)
	}

	// containerd runs the arm64 image under qemu user emulation: the
	// base's arm64 python3 imports the aarch64 wheel and the pure one.
	t.Run("run linux/arm64 under qemu", func(t *testing.T) {
		needEmulation(t, "arm64")
		ref := env.registry + "/cir/pipapp:arm64"
		runCmd(t, "", "ctr", append(ctr, "images", "pull", "--plain-http", "--platform", "linux/arm64", ref)...)
		start := time.Now()
		got := runCmd(t, "", "ctr", append(ctr, "run", "--rm", "--platform", "linux/arm64", ref, id+"arm")...)
		t.Logf("arm64 app ran in %v under emulation", time.Since(start).Round(time.Millisecond))
		if strings.TrimSpace(got) != "app aarch64 pure" {
			t.Errorf("arm64 app printed %q", got)
		}
		got = runCmd(t, "", "ctr", append(ctr, "run", "--rm", "--platform", "linux/arm64", ref, id+"armm", "python3", "-c", "import platform, mypkg; print(platform.machine(), mypkg.VALUE)")...)
		if strings.TrimSpace(got) != "aarch64 aarch64 pure" {
			t.Errorf("arm64 python3 printed %q", got)
		}
	})

	// A second application with the same dependencies: same wheel layers.
	dir2 := cirContext(t, base, deps)
	writeFile(t, filepath.Join(dir2, "app/other.py"), []byte("print('other')\n"))
	build(t, env.buildkit, dir2, "-t", env.registry+"/cir/pipapp2:v1", "--push")
	if out, err := deploy(t, env.registry+"/cir/pipapp2:v1", "--platform", "linux/amd64", "-t", env.registry+"/cir/pipapp2:amd64", "--push"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	l1, l2 := layers(t, env.registry+"/cir/pipapp:amd64"), layers(t, env.registry+"/cir/pipapp2:amd64")
	if len(l1) != 4 || len(l2) != 4 || l1[1].Digest != l2[1].Digest || l1[2].Digest != l2[2].Digest || l1[3].Digest == l2[3].Digest {
		t.Errorf("wheel layers must be shared and app layers differ:\n%v\n%v", l1, l2)
	}
}

// Bad inputs of a deploy, each with its message: every requirement without
// a wheel for the platform named at once, direct or transitive with the
// path that required it, an unreachable index named, a
// wheel whose bytes changed after resolution, a platform the CIR's base was
// not pinned for.
func TestCIRDeployErrors(t *testing.T) {
	base := debianBase(t)
	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	add(wheel(t, "purepkg", "2.0", "py3-none-any", map[string]string{"purepkg/__init__.py": "NAME = 'pure'\n"}, nil, ""))
	add(wheel(t, "armonly", "1.0", "py3-none-manylinux2014_aarch64", map[string]string{"armonly/__init__.py": ""}, nil, ""))
	add(wheel(t, "top", "1.0", "py3-none-any", map[string]string{"top/__init__.py": ""}, []string{"mid", "armonly>=1", "purepkg"}, ""))
	add(wheel(t, "mid", "1.0", "py3-none-any", map[string]string{"mid/__init__.py": ""}, []string{"deep", `winonly; sys_platform == "win32"`}, ""))
	ix := startPipIndex(t, files)

	for _, tc := range []struct {
		name string
		deps map[string]any
		want string
	}{
		{"missing wheels", map[string]any{"pip": []string{"purepkg", "armonly", "nosuchpkg==1.0"}, "pipIndex": ix.URL},
			"pip: no wheel for linux/amd64 (Python 3.11) on " + ix.URL + " for: armonly, nosuchpkg==1.0"},
		// pip stops at the first; every one is listed, with its path.
		{"missing transitive wheels", map[string]any{"pip": []string{"top", "nosuchpkg==1.0"}, "pipIndex": ix.URL},
			"pip: no wheel for linux/amd64 (Python 3.11) on " + ix.URL + " for: nosuchpkg==1.0, armonly>=1 (via top 1.0), deep (via top 1.0 → mid 1.0)"},
		{"unreachable index", map[string]any{"pip": []string{"purepkg"}, "pipIndex": "http://127.0.0.1:9/simple"},
			"pip: index http://127.0.0.1:9/simple cannot be reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := env.registry + "/cir/bad:" + strings.ReplaceAll(tc.name, " ", "-")
			build(t, env.buildkit, cirContext(t, base, tc.deps), "-t", ref, "--push")
			out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push")
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("deploy: %v, want %q in\n%s", err, tc.want, out)
			}
			if strings.Contains(out, "winonly") {
				t.Errorf("a requirement for win32 only was walked into:\n%s", out)
			}
		})
	}

	ref := env.registry + "/cir/bad:tampered"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"purepkg"}, "pipIndex": ix.URL}), "-t", ref, "--push")
	ix.mu.Lock()
	ix.tamper["purepkg-2.0-py3-none-any.whl"] = true
	ix.mu.Unlock()
	out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-amd64", "--push")
	if err == nil || !strings.Contains(out, "wheel purepkg 2.0 from "+strings.TrimSuffix(ix.URL, "/simple")+"/files/purepkg-2.0-py3-none-any.whl: checksum mismatch") {
		t.Fatalf("deploy of a tampered wheel: %v\n%s", err, out)
	}

	out, err = deploy(t, ref, "--platform", "linux/arm64", "-o", "type=oci,dest="+filepath.Join(t.TempDir(), "x.tar"))
	if err == nil || !strings.Contains(out, "was pinned for linux/amd64 at pre-build, not for linux/arm64") {
		t.Fatalf("deploy for an unpinned platform: %v\n%s", err, out)
	}
}

// A registry cache of dependency layers: a fresh buildkitd deploying with
// --cache-from takes every wheel layer from the registry cache instead of
// fetching the wheel from the index again, and makes the same image.
func TestCIRDeployCacheFrom(t *testing.T) {
	base := debianBase(t)
	files := map[string][]byte{}
	add := func(name string, data []byte) { files[name] = data }
	// Contents of this test's own: the same wheel built by another test
	// would already be a cached layer on the main buildkitd.
	add(wheel(t, "purepkg", "2.0", "py3-none-any", map[string]string{"purepkg/__init__.py": "NAME = 'cache test'\n"}, nil, ""))
	add(wheel(t, "mypkg", "1.0", "py3-none-manylinux2014_x86_64", map[string]string{"mypkg/__init__.py": "import purepkg\nVALUE = 'cache test ' + purepkg.NAME\n"}, []string{"purepkg>=2"}, ""))
	ix := startPipIndex(t, files)
	ref := env.registry + "/cir/cached:v1"
	build(t, env.buildkit, cirContext(t, base, map[string]any{"pip": []string{"mypkg==1.0"}, "pipIndex": ix.URL}), "-t", ref, "--push")
	cache := "type=registry,ref=" + env.registry + "/cir/depcache:v1"

	if out, err := deploy(t, ref, "--platform", "linux/amd64", "-t", ref+"-a", "--push", "--cache-to", cache+",mode=max"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	fetched := func() int {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		n := 0
		for _, c := range ix.fetches {
			n += c
		}
		return n
	}
	if n := fetched(); n != 2 {
		t.Fatalf("the first deploy fetched %d wheels, want 2", n)
	}
	fresh := extraBuildkitd(t, "cirfresh")
	out, err := tryCmd("", filepath.Join(env.bin, "2dfs"), "deploy", "--addr", fresh, "--progress", "plain", "--insecure", ref, "--platform", "linux/amd64", "-t", ref+"-b", "--push", "--cache-from", cache)
	if err != nil {
		t.Fatalf("deploy on a fresh buildkitd: %v\n%s", err, out)
	}
	if n := fetched(); n != 2 {
		t.Errorf("the fresh buildkitd fetched %d wheels from the index, want none:\n%s", n-2, out)
	}
	a, _ := remoteImage(t, ref+"-a").Digest()
	b, _ := remoteImage(t, ref+"-b").Digest()
	if a != b {
		t.Errorf("the cached deploy made %s, the first %s", b, a)
	}
}
