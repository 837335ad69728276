package tests

// Harness for the registry proxy's end-to-end tests: the 2dfs-proxy binary,
// extra distribution registries (with auth, or to kill and restart),
// redis-server, crane, skopeo and ctr, all real processes on loopback ports.

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// proc is a daemon the test started (testenv.Proc). It dies with the test
// process and is stopped when the test ends.
type proc struct{ *testenv.Proc }

func startProc(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p, err := testenv.StartProc(name, bin, filepath.Join(t.TempDir(), name+".log"), env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &proc{p}
}

// start starts it again after stop or kill, and waits until it is ready.
func (p *proc) start(t *testing.T) {
	t.Helper()
	if err := p.Proc.Start(); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *proc) stop() { p.Stop() }

// kill sends SIGKILL: a crash.
func (p *proc) kill() { p.Kill() }

func (p *proc) logText() string { return p.LogTail() }

// waitReady waits until the daemon answers (its testenv Ready check).
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	if err := p.WaitReady(); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// waitUntil polls ok every 100 ms for up to 30 s, and gives up early if p
// (may be nil) exits.
func waitUntil(t *testing.T, what string, p *proc, ok func() bool) {
	t.Helper()
	var tp *testenv.Proc
	if p != nil {
		tp = p.Proc
	}
	if err := testenv.WaitUntil(what, tp, ok); err != nil {
		t.Fatal(err)
	}
}

func httpStatus(url string) int { return testenv.HTTPStatus(url) }

// proxyBin builds cmd/2dfs-proxy once into env.bin (with the race detector
// when TDFS_PROXY_RACE is set, as hack/test does).
func proxyBin(t *testing.T) string {
	t.Helper()
	bin, err := testenv.ProxyBin(env.root, env.bin)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proxyProc is a running 2dfs-proxy.
type proxyProc struct {
	*proc
	addr string // host:port
}

// startProxy runs 2dfs-proxy on a free loopback port in front of the
// registry at upstream (host:port, plain HTTP). Without a -store-dir in
// args it keeps objects in memory only. The test fails if the proxy logged
// a data race or a panic.
func startProxy(t *testing.T, upstream string, args ...string) *proxyProc {
	t.Helper()
	return startProxyBin(t, proxyBin(t), upstream, args...)
}

// startProxyBin is startProxy with the proxy binary bin.
func startProxyBin(t *testing.T, bin, upstream string, args ...string) *proxyProc {
	t.Helper()
	px, err := testenv.StartProxy(bin, upstream, filepath.Join(t.TempDir(), "2dfs-proxy.log"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		px.Stop()
		if log := px.Failures(); log != "" {
			t.Errorf("2dfs-proxy %s:\n%s", px.Addr, log)
		}
	})
	return &proxyProc{proc: &proc{px.Proc}, addr: px.Addr}
}

// restart stops the proxy (SIGTERM) and starts it again with the same
// flags on the same port.
func (p *proxyProc) restart(t *testing.T) {
	t.Helper()
	p.stop()
	p.start(t)
}

// registryProc is a distribution registry the test owns.
type registryProc struct {
	*proc
	addr string
	dir  string // data directory
}

// startRegistry runs the pinned distribution registry on a free port with
// its own data directory; authYAML (an "auth:" section or "") is added to
// its config.
func startRegistry(t *testing.T, name, authYAML string) *registryProc {
	t.Helper()
	r, err := testenv.StartRegistry(env.tools, name, t.TempDir(), authYAML)
	if r != nil {
		t.Cleanup(r.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &registryProc{proc: &proc{r.Proc}, addr: r.Addr, dir: r.Dir}
}

// startRedisServer runs Debian's redis-server on a free loopback port, with
// no persistence, and returns its address and process.
func startRedisServer(t *testing.T) (string, *proc) {
	t.Helper()
	p, addr, err := testenv.StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return addr, &proc{p}
}

// runEnv is runCmd with extra environment variables.
func runEnv(t *testing.T, extra []string, name string, args ...string) string {
	t.Helper()
	out, err := tryEnv(extra, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func tryEnv(extra []string, name string, args ...string) (string, error) {
	return testenv.Output("", extra, name, args...)
}

// dockerConfig writes a DOCKER_CONFIG folder with Basic credentials for
// the given hosts, for crane; it returns the env entry. No hosts: a config
// with no credentials at all.
func dockerConfig(t *testing.T, creds map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	auths := map[string]any{}
	for host, userPass := range creds {
		auths[host] = map[string]string{"auth": b64(userPass)}
	}
	data, _ := json.Marshal(map[string]any{"auths": auths})
	writeFile(t, filepath.Join(dir, "config.json"), data)
	return []string{"DOCKER_CONFIG=" + dir}
}

// crane runs the pinned crane (plain HTTP registries) with a docker config.
func crane(t *testing.T, cfg []string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(runEnv(t, cfg, filepath.Join(env.tools, "crane"), append(args, "--insecure")...))
}

func tryCrane(cfg []string, args ...string) (string, error) {
	out, err := tryEnv(cfg, filepath.Join(env.tools, "crane"), append(args, "--insecure")...)
	return strings.TrimSpace(out), err
}

// fieldFixture is the example field built once into the main registry.
type fieldFixture struct {
	ref    string // env.registry/proxy/field:v1
	repo   string // proxy/field
	want   map[field.Cell]map[string][]byte
	src    pulled
	cells  map[field.Cell]string // allotment layer digest by cell
	baseLs []string              // base layer digests
}

var (
	fieldOnce sync.Once
	fieldFix  *fieldFixture
	fieldErr  string
)

// proxyField builds the example field (base v1) once per test run and
// pushes it to env.registry/proxy/field:v1.
func proxyField(t *testing.T) *fieldFixture {
	t.Helper()
	fieldOnce.Do(func() {
		ok := false
		defer func() {
			if !ok && fieldErr == "" {
				fieldErr = "building the example field failed in an earlier test"
			}
		}()
		base := baseImage(t, "v1", "")
		dir, want := example(t, base)
		f := &fieldFixture{ref: env.registry + "/proxy/field:v1", repo: "proxy/field", want: want}
		build(t, env.buildkit, dir, "-t", f.ref, "--push")
		f.src = pull(t, f.ref)
		f.cells = f.src.allotmentLayers()
		for _, l := range layers(t, base) {
			f.baseLs = append(f.baseLs, l.Digest.String())
		}
		fieldFix, ok = f, true
	})
	if fieldFix == nil {
		t.Fatal(fieldErr)
	}
	return fieldFix
}

// sel parses a selection like "0.0.1.0--2.0.2.0".
func sel(t *testing.T, s string) field.Selection {
	t.Helper()
	_, sl, err := field.ParseTag("x--" + s)
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

// wantLayers is the layer list of a partition of the fixture: base layers,
// then the selected cells' layers in row-major order.
func (f *fieldFixture) wantLayers(t *testing.T, selection string) []string {
	t.Helper()
	s := sel(t, selection)
	out := append([]string(nil), f.baseLs...)
	for _, a := range f.src.record.Allotments { // record order is row-major
		if s.Contains(a.Cell()) {
			out = append(out, f.cells[a.Cell()])
		}
	}
	return out
}

// wantFiles is what `md5sum` of every allotment file in a container of the
// partition prints, sorted by path.
func (f *fieldFixture) wantFiles(t *testing.T, selection string) string {
	t.Helper()
	s := sel(t, selection)
	var lines []string
	for cell, files := range f.want {
		if !s.Contains(cell) {
			continue
		}
		for p, data := range files {
			lines = append(lines, fmt.Sprintf("%x  %s", md5sum(data), p))
		}
	}
	sort.Slice(lines, func(i, j int) bool { return strings.Fields(lines[i])[1] < strings.Fields(lines[j])[1] })
	return strings.Join(append(lines, "base: busybox ok"), "\n")
}

// filesScript lists every regular file under the folders the example field
// writes, with checksums, and checks the base image's busybox is there.
const filesScript = `for d in /model /tokenizer; do [ -d $d ] && find $d -type f; done | sort | xargs -r md5sum; [ -x /bin/busybox ] && echo "base: busybox ok"`

var ctrSeq struct {
	sync.Mutex
	n int
}

// ctrPullRun pulls ref with ctr (plain HTTP; extra pull flags such as
// --user) and runs script in it; it returns the script's output and the
// digest ctr recorded for the image.
func ctrPullRun(t *testing.T, ref, script string, pullFlags ...string) (string, string) {
	t.Helper()
	ctr := func(args ...string) string {
		return runCmd(t, "", "ctr", append([]string{"--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests"}, args...)...)
	}
	ctr(append(append([]string{"images", "pull", "--plain-http"}, pullFlags...), ref)...)
	d := ctrImageDigest(t, ref)
	ctrSeq.Lock()
	ctrSeq.n++
	id := fmt.Sprintf("p%d-%d", os.Getpid(), ctrSeq.n)
	ctrSeq.Unlock()
	return ctrRunScript(t, "tdfs-proxy-tests", ref, id, script), d
}

// ctrRunScript runs script in a container of image ref (already in the
// namespace's store) and returns the script's output (stdout and stderr).
//
// The script writes its output and exit status into a bind-mounted folder
// instead of through ctr's stdout: on a loaded machine `ctr run --rm` now
// and then exited 0 having relayed no output at all (seen as an image
// without files), because ctr's stdio copy can lose the race with the
// task's exit. A script that did not get to write its status fails the
// test as such, and a non-zero status fails it with the output.
func ctrRunScript(t *testing.T, namespace, ref, id, script string) string {
	t.Helper()
	outDir := t.TempDir()
	// Output and errors in one file, as ctr printed them before.
	wrapped := "{\n" + script + "\n} >/out/output 2>&1; echo $? >/out/status"
	relayed := runCmd(t, "", "ctr", "--address", env.ctrAddr, "--namespace", namespace,
		"run", "--rm", "--mount", "type=bind,src="+outDir+",dst=/out,options=rbind:rw", ref, id, "/bin/busybox", "sh", "-c", wrapped)
	read := func(name string) string {
		dt, err := os.ReadFile(filepath.Join(outDir, name))
		if err != nil {
			t.Fatalf("ctr run %s: the script left no %s (%v); ctr printed:\n%s", ref, name, err, relayed)
		}
		return strings.TrimSpace(string(dt))
	}
	status, out := read("status"), read("output")
	if status != "0" {
		t.Fatalf("ctr run %s: the script exited %s:\n%s", ref, status, out)
	}
	return out
}

// ctrImageDigest is the target digest of an image in ctr's store.
func ctrImageDigest(t *testing.T, ref string) string {
	t.Helper()
	out := runCmd(t, "", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests", "images", "ls", "name=="+ref)
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ref {
			return f[2]
		}
	}
	t.Fatalf("ctr has no image %s:\n%s", ref, out)
	return ""
}

// ctrContent reads a blob from ctr's content store.
func ctrContent(t *testing.T, d string) []byte {
	t.Helper()
	out, err := exec.Command("ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests", "content", "get", d).Output()
	if err != nil {
		t.Fatalf("ctr content get %s: %v\n%s", d, err, testenv.ExitStderr(err))
	}
	return out
}

// manifestLayers parses an image manifest and returns its config and layer
// digests.
func manifestLayers(t *testing.T, data []byte) (string, []string) {
	t.Helper()
	var m struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	var ls []string
	for _, l := range m.Layers {
		ls = append(ls, l.Digest)
	}
	return m.Config.Digest, ls
}

func sha256Digest(data []byte) string {
	h := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(h[:])
}

// regGet does one registry API request and returns status, headers and body.
func regGet(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", testenv.ManifestAccept)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

var statusLine = regexp.MustCompile(`^\s*(OCI Conformance Test[^\n]*): (Pass|FAIL|Skip|Disabled|[A-Za-z]+)$`)

func md5sum(data []byte) [16]byte { return md5.Sum(data) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
