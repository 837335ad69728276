package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tdfs-kit/tdfs/cir"
)

// Experiment 9 (hack/bench -cir): a CIR against the fat images a Dockerfile
// makes for the same application, in size and in deploy time on a node
// with a fresh containerd. Not part of the default run: it fetches about
// 150 MB from the Debian archive per cold deploy and builds an arm64 image
// under qemu, minutes the other experiments do not need.
const expCIR = 9

// cirPlatforms are the platforms of the size comparison; deploys are
// timed for the first, the node's own.
var cirPlatforms = []string{"linux/amd64", "linux/arm64"}

// cirApp is one application: its direct Debian dependencies and its one
// file. "a" is the application measured; "b" shares most of a's closure
// (numpy, pandas, scipy) and is the one already deployed in case (b).
type cirApp struct {
	key  string
	apt  []string
	main string
}

var cirApps = []cirApp{
	{key: "a", apt: []string{"python3-numpy", "python3-pandas", "python3-sklearn"}, main: `import numpy as np, pandas as pd
from sklearn.linear_model import LinearRegression
df = pd.DataFrame({"x": np.arange(10.0)})
df["y"] = 3 * df["x"] + 1
m = LinearRegression().fit(df[["x"]], df["y"])
print("app-a numpy", np.__version__, "pandas", pd.__version__, "slope", round(float(m.coef_[0]), 3))
`},
	{key: "b", apt: []string{"python3-pandas", "python3-scipy", "python3-yaml"}, main: `import numpy as np, pandas as pd, scipy.stats, yaml
s = pd.Series(np.arange(1.0, 6.0))
print("app-b", yaml.safe_dump({"mean": float(s.mean()), "gmean": round(float(scipy.stats.gmean(s)), 3)}).strip())
`},
}

// cirWantOutput is what app a prints when it runs: the check that an
// assembled image and the fat image are the same working application.
const cirWantOutput = "slope 3.0"

// CIRInfo is what experiment 9 measured besides its rows.
type CIRInfo struct {
	Apps map[string][]string `json:"apps"` // direct apt dependencies per application
	// Closure is the number of packages deploy resolved, per
	// "app/platform"; Shared how many of a's linux/amd64 closure b's has.
	Closure map[string]int `json:"closure"`
	Shared  int            `json:"shared"`
	// BaseMB is the base image per platform (manifest, config, layers).
	BaseMB map[string]float64 `json:"base_mb"`
	// AssembledMB and AssembledLayers describe a deployed for each platform.
	AssembledMB     map[string]float64 `json:"assembled_mb"`
	AssembledLayers map[string]int     `json:"assembled_layers"`
	FatLayers       map[string]int     `json:"fat_layers"`
	// FatBuildSeconds is the wall time of each fat image's build, per
	// "app/platform" (arm64 RUNs under qemu user emulation).
	FatBuildSeconds map[string]float64 `json:"fat_build_seconds"`
	// AptIndexMB is what apt-get update fetched in a's fat build, per
	// platform: the index every CIR deploy also fetches (in its resolver
	// container, which the archive proxy does not see).
	AptIndexMB map[string]float64 `json:"apt_index_mb"`
	// FatDebsMB is what apt-get install fetched in a's fat build.
	FatDebsMB map[string]float64 `json:"fat_debs_mb"`
	// DeploySeconds are one-off deploys: the cache fill (amd64, with
	// --cache-to) and the arm64 deploy, each on a fresh buildkitd.
	DeploySeconds map[string]float64 `json:"deploy_seconds"`
	// Checks is what app a printed in each image that was run.
	Checks map[string]string `json:"checks"`
	// FatZstdLayers is the layer count of a's fat image built at equal
	// settings (zstd level 1, forced), per platform.
	FatZstdLayers map[string]int `json:"fat_zstd_layers,omitempty"`
	// FatZstdBuildSeconds is the wall time of each equal-settings build,
	// per "app/platform": the same Dockerfile on the same buildkitd right
	// after the gzip build, so every step is cached and only the export
	// compresses again.
	FatZstdBuildSeconds map[string]float64 `json:"fat_zstd_build_seconds,omitempty"`
	// Phases is where each timed CIR deploy's time went, per variant and
	// run, read from its plain progress log (cir_phases.go).
	Phases map[string][]DeployPhases `json:"phases,omitempty"`
}

// imageSize is an image's bytes as a registry stores them.
type imageSize struct {
	Manifest int64
	Config   int64
	Layers   []layerSize
}

type layerSize struct {
	Digest string
	Size   int64
}

// total is every byte of the image: manifest, config and layers.
func (s imageSize) total() int64 {
	n := s.Manifest + s.Config
	for _, l := range s.Layers {
		n += l.Size
	}
	return n
}

// addedOver is the bytes of the layers after base's: what an image built
// FROM base adds to it. By position, not digest: an image exported with
// force-compression holds the base's layers recompressed, under other
// digests.
func (s imageSize) addedOver(base imageSize) int64 {
	var n int64
	for i, l := range s.Layers {
		if i >= len(base.Layers) {
			n += l.Size
		}
	}
	return n
}

// readImageSize reads the manifest of REPO:TAG from the registry at host.
// An index is an error: every image here is one platform's.
func readImageSize(host, repo, tag string) (imageSize, error) {
	req, _ := http.NewRequest("GET", "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := httpc.Do(req)
	if err != nil {
		return imageSize{}, err
	}
	defer resp.Body.Close()
	dt, err := io.ReadAll(resp.Body)
	if err != nil {
		return imageSize{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return imageSize{}, fmt.Errorf("GET %s:%s: %s: %s", repo, tag, resp.Status, dt)
	}
	var m struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			Size int64 `json:"size"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(dt, &m); err != nil {
		return imageSize{}, fmt.Errorf("%s:%s: %w", repo, tag, err)
	}
	if strings.Contains(m.MediaType, "index") || strings.Contains(m.MediaType, "list") {
		return imageSize{}, fmt.Errorf("%s:%s is an index (%s), not one platform's image", repo, tag, m.MediaType)
	}
	s := imageSize{Manifest: int64(len(dt)), Config: m.Config.Size}
	for _, l := range m.Layers {
		s.Layers = append(s.Layers, layerSize{l.Digest, l.Size})
	}
	return s, nil
}

// aptFetched are apt's "Fetched 15.0 MB in 1s (10.3 MB/s)" lines, in
// bytes, in the order printed (apt-get update's, then apt-get install's).
// apt's units are decimal: B, kB, MB, GB.
func aptFetched(log string) []float64 {
	var out []float64
	for _, m := range aptFetchedRE.FindAllStringSubmatch(log, -1) {
		v, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
		if err != nil {
			continue
		}
		out = append(out, v*map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]])
	}
	return out
}

var aptFetchedRE = regexp.MustCompile(`Fetched ([0-9][0-9,.]*) (B|kB|MB|GB) in `)

// fatDockerfile is the conventional image of an application: the same
// base, apt-get install of the same direct dependencies (no recommends,
// lists removed, as Debian's own guidance for images says), the app.
func fatDockerfile(base string, app cirApp) string {
	return fmt.Sprintf(`FROM %s
RUN apt-get update && apt-get install -y --no-install-recommends %s && rm -rf /var/lib/apt/lists/*
COPY main.py /app/main.py
ENTRYPOINT ["python3", "/app/main.py"]
`, base, strings.Join(app.apt, " "))
}

// cirDescriptor is the same application as a CIR.
func cirDescriptor(base string, app cirApp) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"base":         base,
		"dependencies": map[string]any{"apt": app.apt},
		"config":       map[string]any{"entrypoint": []string{"python3", "/app/main.py"}},
		"allotments":   []map[string]any{{"src": "app", "dst": "/app", "row": 0, "col": 0}},
	}, "", "  ")
}

// archiveProxy is a forward HTTP proxy (plain GETs and CONNECT tunnels)
// that counts the response bytes it passes: what buildkitd's HTTP source
// fetches from the Debian archive, when buildkitd runs with HTTP_PROXY set
// to it.
type archiveProxy struct {
	srv *http.Server
	ln  net.Listener
	n   atomic.Int64
	// requests counts the fetches, the number of .debs taken from the
	// archive.
	requests atomic.Int64
}

func newArchiveProxy() (*archiveProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &archiveProxy{ln: ln}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// direct is the proxy's own transport: never through a proxy itself.
var direct = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}

func (p *archiveProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if r.Method == http.MethodConnect {
		up, err := net.DialTimeout("tcp", r.Host, 30*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "no hijacking", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		go func() { _, _ = io.Copy(up, buf) }()
		_, _ = io.Copy(countWriter{conn, &p.n}, up)
		return
	}
	if !r.URL.IsAbs() {
		http.Error(w, "a proxy takes absolute URLs", http.StatusBadRequest)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Connection")
	resp, err := direct.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(countWriter{w, &p.n}, resp.Body)
}

func (p *archiveProxy) close() { _ = p.srv.Close() }

// cirState is experiment 9's setup: the counters, the CIRs and the fat
// images, by reference.
type cirState struct {
	reg     *counter      // the registry, counted: every reference the node uses goes through it
	archive *archiveProxy // the Debian archive, counted, for buildkitds started by cirBuildkitd
	base    string        // the Debian base (an index), through reg
	cirRef  map[string]string
	fatRef  map[string]string // "app/platform" (gzip) and "app/platform zstd" -> reference through reg
	cache   string            // the registry dependency cache, through reg
	ctrd    string            // the node's containerd socket
	nodes   int
	lock    string // the lock file the cache fill's deploy of a wrote (linux/amd64)
}

// cirBuildkitd starts a new buildkitd with an empty root whose HTTP
// fetches (the .debs) go through the archive proxy, and returns its
// address and a function that stops it and deletes its root.
func (b *bench) cirBuildkitd(s *cirState, name string) (string, func(), error) {
	c := exec.Command(filepath.Join(b.root, "hack/daemons"), "buildkitd", b.daemons, name)
	proxy := "http://" + s.archive.ln.Addr().String()
	// Loopback (the registry) is never proxied by Go; NO_PROXY says so too.
	c.Env = append(os.Environ(), "HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "http_proxy="+proxy, "https_proxy="+proxy, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	out, err := c.Output()
	if err != nil {
		return "", nil, fmt.Errorf("hack/daemons buildkitd %s: %v", name, err)
	}
	stop := func() {
		pidFile := filepath.Join(b.daemons, name+".pid")
		if dt, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(dt))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGTERM)
				for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
					time.Sleep(100 * time.Millisecond)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = os.Remove(pidFile)
		}
		_ = os.RemoveAll(filepath.Join(b.daemons, name+"-root"))
	}
	return strings.TrimSpace(string(out)), stop, nil
}

// cirDeploy runs 2dfs deploy of app's CIR for platform on the buildkitd at
// bk, pushing to ref, and returns the wall time.
func (b *bench) cirDeploy(s *cirState, bk, app, platform, ref, log string, extra ...string) (time.Duration, error) {
	args := append([]string{"deploy", "--addr", bk, "--progress", "plain", "--insecure", s.cirRef[app], "--platform", platform, "-t", ref, "--push"}, extra...)
	_, d, err := b.cmd(log, filepath.Join(b.bin, "2dfs"), args...)
	return d, err
}

// ctrPull pulls ref (fetch and unpack) into the node's namespace ns.
func (b *bench) ctrPull(s *cirState, ns, ref, log string) (time.Duration, error) {
	_, d, err := b.cmd(log, "ctr", "--address", s.ctrd, "--namespace", ns, "images", "pull", "--plain-http", "--platform", cirPlatforms[0], ref)
	return d, err
}

// dropNamespace removes the images of ns and the namespace, so containerd
// collects their content and snapshots.
func (b *bench) dropNamespace(s *cirState, ns string, refs ...string) {
	for _, r := range refs {
		_, _, _ = b.cmd("", "ctr", "--address", s.ctrd, "--namespace", ns, "images", "rm", "--sync", r)
	}
	_, _, _ = b.cmd("", "ctr", "--address", s.ctrd, "namespaces", "rm", ns)
}

// cirCase is one timed deploy: the wall time until the node's containerd
// holds the application's image (deploy + pull for a CIR, pull for a fat
// image) and the bytes it moved.
type cirCase struct {
	deploy, pull float64 // seconds
	regMB        float64 // from the registry to the node (buildkitd, 2dfs and containerd)
	archiveMB    float64 // from the Debian archive (the .debs, through the proxy)
	debs         int64   // archive fetches
}

func (c cirCase) seconds() float64 { return c.deploy + c.pull }

// measure times fn into *into and adds the bytes it moved from the
// registry and the archive, and the .debs it fetched, to c. Every step,
// timed or not, starts with the page cache's dirty data written out: a
// deploy or pull writes hundreds of MB, and their writeback otherwise
// lands in whatever step runs next (the node cases of one run grew from
// 6 to 12 s over three runs while the disk caught up).
func (s *cirState) measure(c *cirCase, fn func() (time.Duration, error), into *float64) error {
	syscall.Sync()
	r0, a0, q0 := s.reg.n.Load(), s.archive.n.Load(), s.archive.requests.Load()
	d, err := fn()
	if err != nil {
		return err
	}
	*into = d.Seconds()
	c.regMB += float64(s.reg.n.Load()-r0) / 1e6
	c.archiveMB += float64(s.archive.n.Load()-a0) / 1e6
	c.debs += s.archive.requests.Load() - q0
	return nil
}

// cirVariants are the timed cases of each run, rotated per run. The
// "-zstd" fat cases pull the same Dockerfile's image exported at the
// CIR's settings (zstd level 1, forced), the peer at equal settings; the
// others pull BuildKit's default (gzip).
var cirVariants = []string{"cir-a", "fat-a", "fat-a-zstd", "cir-b", "fat-b", "fat-b-zstd", "cir-c"}

// fatKey is the fatRef key of a fat variant's image of app on platform.
func fatKey(v, app, platform string) string {
	if strings.HasSuffix(v, "-zstd") {
		return app + "/" + platform + " zstd"
	}
	return app + "/" + platform
}

// cirDeployLog is the log name of the timed deploy of variant v in run:
// the file under logs/ its phases are read from.
func cirDeployLog(v string, run int) string {
	if strings.HasPrefix(v, "node-") {
		return fmt.Sprintf("9-%s-r%d-deploy", v, run)
	}
	return fmt.Sprintf("8-%s-r%d-deploy", v, run)
}

// runCIRCase measures one variant of one run on a fresh node.
func (b *bench) runCIRCase(s *cirState, v string, run int) (cirCase, error) {
	s.nodes++
	ns := fmt.Sprintf("cir-%x-%s-r%d", b.seed&0xffffff, v, run)
	nodeRepo := fmt.Sprintf("%s/bench/cir-node-%x-%s-r%d", s.reg.addr(), b.seed&0xffffff, v, run)
	var c cirCase
	var pulled []string
	defer func() { b.dropNamespace(s, ns, pulled...) }()
	measure := func(fn func() (time.Duration, error), into *float64) error { return s.measure(&c, fn, into) }
	pull := func(ref, log string, into *float64) error {
		pulled = append(pulled, ref)
		return measure(func() (time.Duration, error) { return b.ctrPull(s, ns, ref, log) }, into)
	}
	plat := cirPlatforms[0]
	switch v {
	case "fat-a", "fat-a-zstd":
		err := pull(s.fatRef[fatKey(v, "a", plat)], fmt.Sprintf("8-%s-r%d-pull", v, run), &c.pull)
		return c, err
	case "fat-b", "fat-b-zstd":
		// The node already holds b's fat image of the same settings
		// (untimed): a's shares its base layer only.
		var untimed float64
		if err := pull(s.fatRef[fatKey(v, "b", plat)], fmt.Sprintf("8-%s-r%d-pull-b", v, run), &untimed); err != nil {
			return c, err
		}
		c = cirCase{}
		err := pull(s.fatRef[fatKey(v, "a", plat)], fmt.Sprintf("8-%s-r%d-pull", v, run), &c.pull)
		return c, err
	}
	bk, stop, err := b.cirBuildkitd(s, fmt.Sprintf("cir-node-%d", s.nodes))
	if err != nil {
		return c, err
	}
	defer stop()
	var extra []string
	switch v {
	case "cir-b":
		// Application b deployed and pulled first (untimed), on the same
		// buildkitd and into the same namespace.
		var untimed float64
		if err := measure(func() (time.Duration, error) {
			return b.cirDeploy(s, bk, "b", plat, nodeRepo+":b", fmt.Sprintf("8-%s-r%d-deploy-b", v, run))
		}, &untimed); err != nil {
			return c, err
		}
		if err := pull(nodeRepo+":b", fmt.Sprintf("8-%s-r%d-pull-b", v, run), &untimed); err != nil {
			return c, err
		}
		c = cirCase{}
	case "cir-c":
		extra = []string{"--cache-from", "type=registry,ref=" + s.cache}
	}
	if err := measure(func() (time.Duration, error) {
		return b.cirDeploy(s, bk, "a", plat, nodeRepo+":a", cirDeployLog(v, run), extra...)
	}, &c.deploy); err != nil {
		return c, err
	}
	err = pull(nodeRepo+":a", fmt.Sprintf("8-%s-r%d-pull", v, run), &c.pull)
	return c, err
}

// cirBench is experiment 9.
func (b *bench) cirBench() error {
	s := &cirState{cirRef: map[string]string{}, fatRef: map[string]string{}}
	info := &CIRInfo{Apps: map[string][]string{}, Closure: map[string]int{}, BaseMB: map[string]float64{}, AssembledMB: map[string]float64{},
		AssembledLayers: map[string]int{}, FatLayers: map[string]int{}, FatBuildSeconds: map[string]float64{}, AptIndexMB: map[string]float64{},
		FatDebsMB: map[string]float64{}, DeploySeconds: map[string]float64{}, Checks: map[string]string{},
		FatZstdLayers: map[string]int{}, FatZstdBuildSeconds: map[string]float64{}, Phases: map[string][]DeployPhases{}}
	b.res.CIR = info
	var err error
	if s.reg, err = newCounter(b.registry); err != nil {
		return err
	}
	defer s.reg.ln.Close()
	if s.archive, err = newArchiveProxy(); err != nil {
		return err
	}
	defer s.archive.close()
	// Every buildkitd started from here on reaches the counted registry
	// address over plain HTTP.
	if err := b.env.PlainHTTP(s.reg.addr()); err != nil {
		return err
	}
	seed := fmt.Sprintf("%x", b.seed&0xffffff)

	// The base: hack/debian-base (debootstrap, cached), pushed straight to
	// the registry and named through the counter everywhere else.
	baseRepo := "bench/cir-debian-" + seed
	if _, _, err := b.cmd("8-debian-base", filepath.Join(b.root, "hack/debian-base"), b.registry+"/"+baseRepo+":bookworm-python", "amd64,arm64"); err != nil {
		return err
	}
	s.base = s.reg.addr() + "/" + baseRepo + ":bookworm-python"
	baseSize := map[string]imageSize{}
	for _, p := range cirPlatforms {
		sz, err := readImageSize(b.registry, baseRepo, "bookworm-python-"+archOf(p))
		if err != nil {
			return err
		}
		baseSize[p] = sz
		info.BaseMB[p] = float64(sz.total()) / 1e6
	}

	// The builder of the CIRs and the fat images; the node's containerd.
	builder, stopBuilder, err := b.cirBuildkitd(s, "cir-builder")
	if err != nil {
		return err
	}
	defer stopBuilder()
	if s.ctrd, err = b.startContainerd(); err != nil {
		return err
	}
	defer b.stopContainerd()

	cirSize := map[string]imageSize{}
	fatSize, fatZstdSize := map[string]imageSize{}, map[string]imageSize{}
	var jobs []*fatJob
	for _, app := range cirApps {
		info.Apps[app.key] = app.apt
		dir := filepath.Join(b.work, "cir-"+app.key)
		desc, err := cirDescriptor(s.base, app)
		if err != nil {
			return err
		}
		for path, dt := range map[string][]byte{
			filepath.Join(dir, "cir", "2dfs.json"): desc, filepath.Join(dir, "cir", "app", "main.py"): []byte(app.main),
			filepath.Join(dir, "fat", "Dockerfile"): []byte(fatDockerfile(b.registry+"/"+baseRepo+":bookworm-python", app)),
			filepath.Join(dir, "fat", "main.py"):    []byte(app.main),
		} {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, dt, 0o644); err != nil {
				return err
			}
		}
		repo := fmt.Sprintf("bench/cir-app-%s-%s", app.key, seed)
		s.cirRef[app.key] = s.reg.addr() + "/" + repo + ":cir"
		if _, _, err := b.cmd("8-cir-build-"+app.key, filepath.Join(b.bin, "2dfs"), "build", "--addr", builder, "--progress", "plain",
			"--platform", strings.Join(cirPlatforms, ","), "-t", b.registry+"/"+repo+":cir", "--push", filepath.Join(dir, "cir")); err != nil {
			return err
		}
		if cirSize[app.key], err = readImageSize(b.registry, repo, "cir"); err != nil {
			return err
		}
		// Fat images: a for both platforms, b for the node's only (the
		// image case (b) finds on the node).
		for _, p := range cirPlatforms {
			if app.key == "a" || p == cirPlatforms[0] {
				jobs = append(jobs, &fatJob{app: app, platform: p, dir: filepath.Join(dir, "fat"), repo: fmt.Sprintf("bench/cir-fat-%s-%s", app.key, seed)})
			}
		}
	}
	// The arm64 build runs its RUN under qemu and takes minutes: it runs
	// beside the other untimed setup (the amd64 builds, the one-off
	// deploys), and the timed cases start only when it is done.
	var emulated sync.WaitGroup
	defer emulated.Wait()
	var emulatedDone atomic.Int64 // unix nanoseconds
	for _, j := range jobs {
		if archOf(j.platform) != runtime.GOARCH {
			emulated.Add(1)
			go func() {
				defer emulated.Done()
				b.fatBuild(builder, j)
				emulatedDone.Store(time.Now().UnixNano())
			}()
		}
	}
	// done records a built fat image: its time, reference and size.
	done := func(j *fatJob) error {
		if j.err != nil {
			return j.err
		}
		k := j.app.key + "/" + j.platform
		info.FatBuildSeconds[k], info.FatZstdBuildSeconds[k] = j.d.Seconds(), j.zstdD.Seconds()
		s.fatRef[k] = s.reg.addr() + "/" + j.repo + ":" + j.tag(false)
		s.fatRef[k+" zstd"] = s.reg.addr() + "/" + j.repo + ":" + j.tag(true)
		if j.app.key != "a" {
			return nil
		}
		if f := aptFetched(j.out); len(f) >= 2 {
			info.AptIndexMB[j.platform], info.FatDebsMB[j.platform] = f[0]/1e6, f[1]/1e6
		}
		sz, err := readImageSize(b.registry, j.repo, j.tag(false))
		if err != nil {
			return err
		}
		fatSize[j.platform] = sz
		info.FatLayers[j.platform] = len(sz.Layers)
		zsz, err := readImageSize(b.registry, j.repo, j.tag(true))
		fatZstdSize[j.platform] = zsz
		info.FatZstdLayers[j.platform] = len(zsz.Layers)
		return err
	}
	for _, j := range jobs {
		if archOf(j.platform) == runtime.GOARCH {
			b.fatBuild(builder, j)
			if err := done(j); err != nil {
				return err
			}
		}
	}

	// The dependency cache, filled by a deploy of a on a buildkitd of its
	// own; then a for arm64 on another, without emulation.
	s.cache = s.reg.addr() + "/bench/cir-cache-" + seed + ":deps"
	for _, p := range cirPlatforms {
		bk, stop, err := b.cirBuildkitd(s, "cir-fill-"+archOf(p))
		if err != nil {
			return err
		}
		var extra []string
		if p == cirPlatforms[0] {
			// The lock is what a CI pipeline would commit after this
			// deploy: the node-side -lock cases deploy with it.
			s.lock = filepath.Join(b.work, "cir-a.lock")
			extra = []string{"--cache-to", "type=registry,ref=" + s.cache + ",mode=max", "--lock", s.lock}
		}
		ref := fmt.Sprintf("%s/bench/cir-assembled-%s:a-%s", b.registry, seed, archOf(p))
		d, err := b.cirDeploy(s, bk, "a", p, ref, "8-deploy-a-"+archOf(p), extra...)
		stop()
		if err != nil {
			return err
		}
		info.DeploySeconds["a/"+p] = d.Seconds()
		sz, err := readImageSize(b.registry, fmt.Sprintf("bench/cir-assembled-%s", seed), "a-"+archOf(p))
		if err != nil {
			return err
		}
		info.AssembledMB[p], info.AssembledLayers[p] = float64(sz.total())/1e6, len(sz.Layers)
		if info.Closure["a/"+p], _, err = b.resolvedDebs(ref); err != nil {
			return err
		}
		// Run the application in the assembled image (arm64 under qemu):
		// a size or time figure of an image that does not work would mean
		// nothing.
		b.check(info, builder, "assembled", ref, p)
	}
	// The fat image of the node's platform runs too (the other one is
	// Debian's own apt install under emulation: minutes, and no news).
	b.check(info, builder, "fat", b.registry+"/"+jobs[0].repo+":"+jobs[0].tag(false), jobs[0].platform)
	b.check(info, builder, "fat-zstd", b.registry+"/"+jobs[0].repo+":"+jobs[0].tag(true), jobs[0].platform)

	// How much of a's closure b's covers: the packages case (b) finds in
	// the node's cache.
	_, aDebs, err := b.resolvedDebs(fmt.Sprintf("%s/bench/cir-assembled-%s:a-%s", b.registry, seed, archOf(cirPlatforms[0])))
	if err != nil {
		return err
	}

	// The timed cases, interleaved and rotated per run. The emulated fat
	// build may still be running: waiting for it would add minutes of
	// idle time, and the rotation spreads its load over CIR and fat cases.
	cases := map[string][]cirCase{}
	var runStarts []time.Time
	for run := range b.runs {
		runStarts = append(runStarts, time.Now())
		for _, v := range runOrder(append(slices.Clone(cirVariants), cirNodeVariants...), run) {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			var c cirCase
			var err error
			if strings.HasPrefix(v, "node-") {
				c, err = b.runCIRNodeCase(s, info, v, run)
			} else {
				c, err = b.runCIRCase(s, v, run)
			}
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", v, run+1, err)
			}
			cases[v] = append(cases[v], c)
			if !strings.HasPrefix(v, "fat-") {
				b.recordPhases(info, v, run, c)
			}
			b.logf("exp 9 run %d: %s %.1fs (deploy %.1fs, pull %.1fs), registry %.1f MB, archive %.1f MB in %d fetches", run+1, v, c.seconds(), c.deploy, c.pull, c.regMB, c.archiveMB, c.debs)
		}
	}
	emulated.Wait()
	overlapped := 0
	for _, t := range runStarts {
		if t.UnixNano() < emulatedDone.Load() {
			overlapped++
		}
	}
	if overlapped > 0 {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("Experiment 9: the emulated linux/arm64 fat build was still running during %d of the %d runs of the timed cases (it started with the setup).", overlapped, len(runStarts)))
	}
	for _, j := range jobs {
		if archOf(j.platform) != runtime.GOARCH {
			if err := done(j); err != nil {
				return err
			}
		}
	}
	b.cirSizeRows(cirSize["a"], fatSize, fatZstdSize, baseSize)
	for _, p := range cirPlatforms {
		// Against the fat image at equal settings: the assembled image's
		// package layers are zstd -1 too (its base layer is the
		// registry's gzip blob).
		b.add(&Row{Exp: expCIR, Key: "cir/assembled/" + p, Name: "assembled image (base + packages + app) vs fat image (zstd -1), " + p + ", bytes", Settings: Equal, Unit: "MB",
			Ours: []float64{info.AssembledMB[p]}, Peer: "fat image, zstd -1", PeerVals: []float64{float64(fatZstdSize[p].total()) / 1e6}, RatioKind: Relative,
			Detail: fmt.Sprintf("%d layers against the fat image's %d; the fat image has what maintainer scripts make (byte-compiled .pyc files among them), the assembled one does not; the fat image at gzip: %.1f MB",
				info.AssembledLayers[p], info.FatZstdLayers[p], float64(fatSize[p].total())/1e6)})
	}
	bDebs, err := b.resolvedDebsOf(fmt.Sprintf("%s/bench/cir-node-%s-cir-b-r0:b", b.registry, seed))
	if err != nil {
		return err
	}
	info.Closure["b/"+cirPlatforms[0]] = len(bDebs)
	for _, d := range aDebs {
		if slices.Contains(bDebs, d) {
			info.Shared++
		}
	}
	b.cirDeployRows(cases, info)
	b.cirNodeRows(cases)
	return nil
}

// recordPhases reads where the timed deploy of v in run spent its time
// from its plain progress log under logs/. A log it cannot read is said
// in the notes; the run keeps its place (no phases) so runs stay aligned.
func (b *bench) recordPhases(info *CIRInfo, v string, run int, c cirCase) {
	d := DeployPhases{Deploy: c.deploy, Pull: c.pull}
	path := filepath.Join(b.out, "logs", cirDeployLog(v, run)+".log")
	dt, err := os.ReadFile(path)
	if err == nil {
		d.Phases, err = parseDeployPhases(string(dt))
	}
	if err != nil {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("Experiment 9: no phase breakdown of %s: %v", path, err))
	}
	info.Phases[v] = append(info.Phases[v], d)
}

// fatJob is one fat image build: a Dockerfile for one platform, exported
// at BuildKit's default (gzip) and then at equal settings (zstd).
type fatJob struct {
	app            cirApp
	platform       string
	dir, repo, out string
	d, zstdD       time.Duration
	err            error
}

// fatZstdAttrs are the image exporter's attributes of the fat image at
// equal settings: the CIR's layer compression (2dfs's default, zstd level
// 1), forced so the base's gzip layer is recompressed too and every layer
// the node pulls is zstd.
const fatZstdAttrs = ",compression=zstd,compression-level=1,force-compression=true"

// tag is the fat image's tag at the default (gzip) or equal (zstd)
// settings.
func (j *fatJob) tag(zstd bool) string {
	if zstd {
		return archOf(j.platform) + "-zstd"
	}
	return archOf(j.platform)
}

// fatBuild builds and pushes j with buildctl and BuildKit's Dockerfile
// frontend, at the default, then once more at equal settings on the same
// buildkitd: the second build finds every step cached (the same layers'
// contents, byte for byte) and only exports and pushes again.
func (b *bench) fatBuild(builder string, j *fatJob) {
	build := func(zstd bool) (string, time.Duration, error) {
		attrs, log := "", fmt.Sprintf("8-fat-build-%s-%s", j.app.key, archOf(j.platform))
		if zstd {
			attrs, log = fatZstdAttrs, log+"-zstd"
		}
		return b.cmd(log, filepath.Join(b.tools, "buildctl"),
			b.buildctl(builder, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
				"--local", "context="+j.dir, "--local", "dockerfile="+j.dir, "--opt", "platform="+j.platform,
				"--output", "type=image,name="+b.registry+"/"+j.repo+":"+j.tag(zstd)+",push=true"+attrs)...)
	}
	b.logf("exp 9: fat image of %s for %s (Dockerfile, apt-get install)", j.app.key, j.platform)
	if j.out, j.d, j.err = build(false); j.err != nil {
		return
	}
	_, j.zstdD, j.err = build(true)
	b.logf("exp 9: fat image of %s for %s built in %.0f s, again at zstd -1 in %.0f s", j.app.key, j.platform, j.d.Seconds(), j.zstdD.Seconds())
}

// check runs app a in img and records what it printed, or why it failed
// in the run's notes.
func (b *bench) check(info *CIRInfo, builder, kind, img, platform string) {
	got, err := b.runApp(builder, img, platform, fmt.Sprintf("8-check-%s-%s", kind, archOf(platform)))
	info.Checks[kind+" "+platform] = got
	if err != nil {
		info.Checks[kind+" "+platform] = "failed: " + firstLine(err.Error())
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("Experiment 9: app a in the %s %s image did not run: %v", kind, platform, firstLine(err.Error())))
	}
}

// resolvedDebs reads an assembled image's closure (config key
// org.2dfs.cir.closure): the number of packages and their
// name=version_arch.
func (b *bench) resolvedDebs(ref string) (int, []string, error) {
	debs, err := b.resolvedDebsOf(ref)
	return len(debs), debs, err
}

func (b *bench) resolvedDebsOf(ref string) ([]string, error) {
	out, _, err := b.cmd("", filepath.Join(b.tools, "crane"), "config", "--insecure", ref)
	if err != nil {
		return nil, err
	}
	// The closure is under a config key (the label holds only counts).
	r, err := cir.ResolvedFromConfig([]byte(out))
	if err == nil && r == nil {
		err = fmt.Errorf("no %s in the config", cir.ResolvedConfigKey)
	}
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", ref, err)
	}
	var debs []string
	for _, d := range r.Debs {
		debs = append(debs, d.Name+"="+d.Version+"_"+d.Arch)
	}
	return debs, nil
}

// runApp runs app a's entrypoint in img for platform as the RUN step of a
// throwaway Dockerfile and returns what it printed: images in the
// registry, either platform (arm64 under qemu). The node-side cases run
// the image in the node's containerd with ctr run (runCIRNodeCase).
func (b *bench) runApp(builder, img, platform, log string) (string, error) {
	dir := filepath.Join(b.work, log)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// stderr stays in the build's output, so a failure says why.
	df := fmt.Sprintf("FROM %s AS run\nRUN python3 /app/main.py > /out.txt\nFROM scratch\nCOPY --from=run /out.txt /\n", img)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return "", err
	}
	if out, _, err := b.cmd(log, filepath.Join(b.tools, "buildctl"), b.buildctl(builder, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
		"--local", "context="+dir, "--local", "dockerfile="+dir, "--opt", "platform="+platform, "--output", "type=local,dest="+filepath.Join(dir, "out"))...); err != nil {
		return "", fmt.Errorf("%s", lastStepLine(out))
	}
	dt, err := os.ReadFile(filepath.Join(dir, "out", "out.txt"))
	got := strings.TrimSpace(string(dt))
	if err == nil && !strings.Contains(got, cirWantOutput) {
		err = fmt.Errorf("printed %q, want %q in it", got, cirWantOutput)
	}
	return got, err
}

// lastStepLine is the last line a build step printed ("#5 0.226 exec
// /bin/sh: no such file or directory" -> its message), or "failed".
func lastStepLine(out string) string {
	m := stepLineRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return "failed"
	}
	return m[len(m)-1][1]
}

var stepLineRE = regexp.MustCompile(`(?m)^#\d+ \d+\.\d+ (.+)$`)

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// archOf is the Debian/OCI architecture of os/arch.
func archOf(platform string) string {
	_, a, _ := strings.Cut(platform, "/")
	return a
}

// cirSizeRows adds the size figures: the CIR against each platform's fat
// image and their sum, and against what each fat image adds over the base
// (the CIR has no base layers; a fat image does).
// Each twice: against the fat images at equal settings (zstd -1, keys
// cir/size-zstd/...), then at BuildKit's default (gzip, cir/size/...).
func (b *bench) cirSizeRows(c imageSize, fatGzip, fatZstd, base map[string]imageSize) {
	for _, set := range cirFatSettings {
		fat := fatGzip
		if set.zstd {
			fat = fatZstd
		}
		var fatSum, addSum float64
		for _, p := range cirPlatforms {
			f, add := float64(fat[p].total())/1e6, float64(fat[p].addedOver(base[p]))/1e6
			fatSum += f
			addSum += add
			b.add(cirSizeRow("cir/size"+set.suffix+"/"+p, "CIR vs fat image ("+set.fat+"), "+p, set.settings, c, f,
				fmt.Sprintf("fat image %.1f MB in %d layers, %d of them the base's (the base image as the registry holds it: %.1f MB)", f, len(fat[p].Layers), len(base[p].Layers), float64(base[p].total())/1e6)))
			b.add(cirSizeRow("cir/added"+set.suffix+"/"+p, "CIR vs what the fat image ("+set.fat+") adds over the base, "+p, set.settings, c, add, ""))
		}
		b.add(cirSizeRow("cir/size"+set.suffix+"/sum", "CIR vs fat images ("+set.fat+"), "+strings.Join(cirPlatforms, " + "), set.settings, c, fatSum, "one CIR stands for every platform's image"))
		b.add(cirSizeRow("cir/added"+set.suffix+"/sum", "CIR vs what the fat images ("+set.fat+") add over the base, "+strings.Join(cirPlatforms, " + "), set.settings, c, addSum, ""))
	}
}

// cirFatSetting is one compression of the fat images: equal settings
// first, as the project's rule for benchmarks asks, then the default.
type cirFatSetting struct {
	zstd     bool
	suffix   string // of the row keys: "-zstd" or ""
	fat      string // the fat image's label
	label    string // the fat image's label with its settings, in tables
	phrase   string // the fat pull in a sentence
	settings string // Row.Settings
	variant  string // of the fat cases: "-zstd" or ""
}

var cirFatSettings = []cirFatSetting{
	{zstd: true, suffix: "-zstd", fat: "zstd -1", label: "zstd -1 (equal)", phrase: "the fat pull at equal settings (zstd -1)", settings: Equal, variant: "-zstd"},
	{zstd: false, suffix: "", fat: "gzip", label: "gzip (default)", phrase: "the fat pull at the default (gzip)", settings: Defaults, variant: ""},
}

func cirSizeRow(key, name, settings string, c imageSize, peerMB float64, detail string) *Row {
	d := fmt.Sprintf("CIR %d B: manifest %d, config %d, %d layer(s) %d", c.total(), c.Manifest, c.Config, len(c.Layers), c.total()-c.Manifest-c.Config)
	if detail != "" {
		d += "; " + detail
	}
	return &Row{Exp: expCIR, Key: key, Name: name + ", bytes (manifest, config, compressed layers)", Settings: settings, Unit: "MB",
		Ours: []float64{float64(c.total()) / 1e6}, Peer: "fat", PeerVals: []float64{peerMB}, RatioKind: Relative,
		Target: "≤0.05×", TargetMax: 0.05, Detail: d}
}

// cirDeployRows adds the deploy figures: per case, the time until the
// node's containerd holds the application (speedup: the fat pull's time ÷
// the CIR's) and the bytes from the registry, against the fat image at
// equal settings (keys cir/deploy-zstd/..., cir/registry-zstd/...) and at
// BuildKit's default (cir/deploy/..., cir/registry/...); and the bytes
// from the archive.
func (b *bench) cirDeployRows(cases map[string][]cirCase, info *CIRInfo) {
	get := func(v string, f func(cirCase) float64) []float64 {
		var out []float64
		for _, c := range cases[v] {
			out = append(out, f(c))
		}
		return out
	}
	secs := func(c cirCase) float64 { return c.seconds() }
	reg := func(c cirCase) float64 { return c.regMB }
	arch := func(c cirCase) float64 { return c.archiveMB }
	deb := func(c cirCase) float64 { return float64(c.debs) }
	type spec struct {
		key, name, cirV, fatV, peer string
		target                      float64
	}
	for _, s := range []spec{
		{"a", "(a) empty caches: CIR deploy + pull vs fat image pull, fresh node", "cir-a", "fat-a", "fat pull, fresh node", 0},
		{"b", "(b) b already deployed on the node: CIR deploy + pull of a vs fat pull of a onto a node holding fat b", "cir-b", "fat-b", "fat pull, node holds fat b", 2},
		{"c", "(c) fresh buildkitd with --cache-from the registry dependency cache: CIR deploy + pull vs fat image pull, fresh node", "cir-c", "fat-a", "fat pull, fresh node", 2},
	} {
		for _, set := range cirFatSettings {
			fatV := s.fatV + set.variant
			if len(cases[fatV]) == 0 {
				continue
			}
			r := &Row{Exp: expCIR, Key: "cir/deploy" + set.suffix + "/" + s.key, Name: s.name + " (" + set.fat + "), time", Settings: set.settings, Unit: "s",
				Ours: get(s.cirV, secs), Peer: s.peer + ", " + set.fat, PeerVals: get(fatV, secs), RatioKind: Speedup,
				Detail: fmt.Sprintf("fat (%s): ctr pull %s", set.fat, fmtStat(get(fatV, func(c cirCase) float64 { return c.pull }), "s"))}
			if set.zstd {
				// The CIR's side is the same in both rows: said once.
				r.Detail = fmt.Sprintf("CIR: 2dfs deploy %s + ctr pull %s; %s .debs fetched from the archive; ",
					fmtStat(get(s.cirV, func(c cirCase) float64 { return c.deploy }), "s"), fmtStat(get(s.cirV, func(c cirCase) float64 { return c.pull }), "s"),
					fmtSpread(get(s.cirV, deb), "")) + r.Detail
			}
			if s.target > 0 {
				r.Target, r.TargetMin = "≥2×", s.target
			}
			b.add(r)
			b.add(&Row{Exp: expCIR, Key: "cir/registry" + set.suffix + "/" + s.key, Name: s.name + " (" + set.fat + "), bytes from the registry to the node", Settings: set.settings, Unit: "MB",
				Ours: get(s.cirV, reg), Peer: s.peer + ", " + set.fat, PeerVals: get(fatV, reg), RatioKind: Relative,
				Detail: "counted on a loopback forwarder every reference of the node goes through: buildkitd's base and cache reads, 2dfs's reads of the CIR, containerd's pull"})
		}
		b.add(&Row{Exp: expCIR, Key: "cir/archive/" + s.key, Name: s.name + ", .deb bytes from the Debian archive", Unit: "MB", Ours: get(s.cirV, arch),
			Detail: fmt.Sprintf("counted by the forward proxy buildkitd's HTTP source goes through; plus apt-get update's index in the resolver container each deploy, not through the proxy: %.1f MB for linux/amd64 (what the fat build's apt-get update fetched)", info.AptIndexMB[cirPlatforms[0]])})
	}
}
