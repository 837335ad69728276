package tests

// Harness for the registry proxy's end-to-end tests: the 2dfs-proxy binary,
// extra distribution registries (with auth, or to kill and restart),
// redis-server, crane, skopeo and ctr, all real processes on loopback ports.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tdfs-kit/tdfs/field"
)

// proc is a daemon the test started. It dies with the test process
// (Pdeathsig) and is stopped when the test ends.
type proc struct {
	name string
	bin  string
	args []string
	env  []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, bin: bin, args: args, env: env, log: filepath.Join(t.TempDir(), name+".log")}
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// kill sends SIGKILL: a crash.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

func (p *proc) logText() string {
	data, _ := os.ReadFile(p.log)
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitUntil polls ok every 100 ms for up to 30 s.
func waitUntil(t *testing.T, what string, p *proc, ok func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if ok() {
			return
		}
		if p != nil && p.cmd != nil {
			select {
			case <-p.done:
				t.Fatalf("%s exited:\n%s", p.name, p.logText())
			default:
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log := ""
	if p != nil {
		log = p.logText()
	}
	t.Fatalf("%s: not ready after 30 s\n%s", what, log)
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

var (
	proxyBinOnce sync.Once
	proxyBinErr  error
)

// proxyBin builds cmd/2dfs-proxy once into env.bin.
func proxyBin(t *testing.T) string {
	t.Helper()
	proxyBinOnce.Do(func() {
		args := []string{"build", "-o", env.bin + "/"}
		if os.Getenv("TDFS_PROXY_RACE") != "" {
			args = append(args, "-race") // the race detector in the proxy processes
		}
		cmd := exec.Command("go", append(args, "./cmd/2dfs-proxy")...)
		cmd.Dir = env.root
		if out, err := cmd.CombinedOutput(); err != nil {
			proxyBinErr = fmt.Errorf("go build ./cmd/2dfs-proxy: %v\n%s", err, out)
		}
	})
	if proxyBinErr != nil {
		t.Fatal(proxyBinErr)
	}
	return filepath.Join(env.bin, "2dfs-proxy")
}

// proxyProc is a running 2dfs-proxy.
type proxyProc struct {
	*proc
	addr string // host:port
}

// startProxy runs 2dfs-proxy on a free loopback port in front of the
// registry at upstream (host:port, plain HTTP). Without a -store-dir in
// args it keeps objects in memory only.
func startProxy(t *testing.T, upstream string, args ...string) *proxyProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	all := []string{"-listen", addr, "-upstream", "http://" + upstream}
	if !strings.Contains(strings.Join(args, " "), "-store-dir") {
		all = append(all, "-store-dir", "")
	}
	all = append(all, args...)
	p := &proxyProc{proc: startProc(t, "2dfs-proxy-"+strings.ReplaceAll(addr, ":", "-"), proxyBin(t), nil, all...), addr: addr}
	t.Cleanup(func() {
		p.stop()
		if log := p.logText(); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic:") {
			t.Errorf("2dfs-proxy %s:\n%s", addr, log)
		}
	})
	p.waitReady(t)
	return p
}

func (p *proxyProc) waitReady(t *testing.T) {
	t.Helper()
	waitUntil(t, "2dfs-proxy "+p.addr, p.proc, func() bool { return httpStatus("http://"+p.addr+"/livez") == 200 })
}

// restart stops the proxy (SIGTERM) and starts it again with the same
// flags on the same port.
func (p *proxyProc) restart(t *testing.T) {
	t.Helper()
	p.stop()
	p.start(t)
	p.waitReady(t)
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
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, authYAML)
	cfgPath := filepath.Join(dir, "config.yml")
	writeFile(t, cfgPath, []byte(cfg))
	r := &registryProc{proc: startProc(t, "registry-"+name, filepath.Join(env.tools, "registry"), nil, "serve", cfgPath), addr: addr, dir: dir}
	r.waitReady(t)
	return r
}

func (r *registryProc) waitReady(t *testing.T) {
	t.Helper()
	waitUntil(t, "registry "+r.addr, r.proc, func() bool {
		s := httpStatus("http://" + r.addr + "/v2/")
		return s == 200 || s == 401
	})
}

// startRedisServer runs Debian's redis-server on a free loopback port, with
// no persistence, and returns its address and process.
func startRedisServer(t *testing.T) (string, *proc) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed (hack/tools.sh installs it)")
	}
	port := freePort(t)
	p := startProc(t, "redis", bin, nil, "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitUntil(t, "redis-server", p, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		buf := make([]byte, 7)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := io.ReadFull(c, buf)
		return string(buf[:n]) == "+PONG\r\n"
	})
	return addr, p
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
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), extra...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
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
	out := ctr("run", "--rm", ref, id, "/bin/busybox", "sh", "-c", script)
	return strings.TrimSpace(out), d
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
	cmd := exec.Command("ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests", "content", "get", d)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ctr content get %s: %v\n%s", d, err, stderrOf(err))
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
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
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
