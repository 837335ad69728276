package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// proxyState is the running 2dfs-proxy and the field image it serves.
type proxyState struct {
	*testenv.Proxy
	repo      string // repository of the field image
	tag       string // its tag
	sel       string // the partition selection pulled in experiment 4
	srcDigest string // digest of the field manifest
	partDig   string // digest of the partition manifest
	layer     string // digest of the largest layer
	layerSize int64
}

// startProxy starts 2dfs-proxy in front of the registry, memory store only,
// and pushes the field image it serves.
func (b *bench) startProxy() (*proxyState, error) {
	if b.proxy != nil {
		return b.proxy, nil
	}
	px, err := testenv.StartProxy(filepath.Join(b.bin, "2dfs-proxy"), b.registry, filepath.Join(b.out, "logs", "proxy.log"))
	if err != nil {
		return nil, err
	}
	p := &proxyState{Proxy: px}
	b.proxy = p

	// The field image: the cold context, built with 2dfs (cached if
	// experiment 1 ran) into its own repository.
	fc, _, base, err := b.coldContext()
	if err != nil {
		return nil, err
	}
	p.repo = fmt.Sprintf("bench/field-%x", b.seed&0xffffff)
	p.tag = "v1"
	if _, _, err := b.build(vTDFS, fc.dir, b.registry+"/"+p.repo+":"+p.tag, base, "4-field"); err != nil {
		return nil, err
	}
	rows := (b.splits + b.cols - 1) / b.cols
	// About half the splits: the top half of the rows, or the left half
	// of the columns of a one-row field.
	if rows >= 2 {
		p.sel = fmt.Sprintf("0.0.%d.%d", rows/2-1, b.cols-1)
	} else {
		p.sel = fmt.Sprintf("0.0.0.%d", max(0, (b.splits+1)/2-1))
	}
	m, dgst, err := getManifest("http://"+b.registry, p.repo, p.tag)
	if err != nil {
		return nil, err
	}
	p.srcDigest = dgst
	for _, l := range m.Layers {
		if l.Size > p.layerSize {
			p.layer, p.layerSize = l.Digest, l.Size
		}
	}
	_, p.partDig, err = getManifest("http://"+p.Addr, p.repo, p.tag+"--"+p.sel)
	if err != nil {
		return nil, fmt.Errorf("partition through the proxy: %w", err)
	}
	return p, nil
}

func (b *bench) stopProxy() {
	if b.proxy != nil {
		b.proxy.Stop()
	}
}

type manifest struct {
	Layers []struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	} `json:"layers"`
}

var httpc = &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}, Timeout: 2 * time.Minute}

func getManifest(base, repo, ref string) (*manifest, string, error) {
	req, _ := http.NewRequest("GET", base+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", testenv.ManifestAccept)
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	dt, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, "", fmt.Errorf("GET %s/%s: %s: %s", repo, ref, resp.Status, dt)
	}
	var m manifest
	if err := json.Unmarshal(dt, &m); err != nil {
		return nil, "", err
	}
	return &m, resp.Header.Get("Docker-Content-Digest"), nil
}

// counter is a loopback TCP forwarder that counts the bytes it sends back
// to clients: what a pull downloads.
type counter struct {
	ln     net.Listener
	target string
	// n counts the bytes sent back to clients as they flow, so it is
	// right while a client (buildkitd) keeps its connections open
	// between requests.
	n      atomic.Int64
	active atomic.Int64 // open connections
}

// settled waits for the client's connections to close, so n has all of
// their bytes (ctr has exited; the copies finish a moment later).
func (c *counter) settled() {
	for i := 0; i < 200 && c.active.Load() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func newCounter(target string) (*counter, error) { return newCounterOn("127.0.0.1:0", target) }

func newCounterOn(listen, target string) (*counter, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	c := &counter{ln: ln, target: target}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go c.serve(conn)
		}
	}()
	return c, nil
}

func (c *counter) serve(conn net.Conn) {
	c.active.Add(1)
	defer c.active.Add(-1)
	defer conn.Close()
	up, err := net.Dial("tcp", c.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(up, conn)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(countWriter{conn, &c.n}, up)
}

func (c *counter) addr() string { return c.ln.Addr().String() }

// countWriter counts what it writes into n.
type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (w countWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// Experiment 4: pull a partition through the proxy versus pulling the same
// image (same manifest, same layers) straight from the registry, with ctr
// into a fresh namespace each run.
func (b *bench) partitionPull() error {
	p, err := b.startProxy()
	if err != nil {
		return err
	}
	ctrAddr, err := b.startContainerd()
	if err != nil {
		return err
	}
	// The pre-built equivalent: the partition's manifest and config,
	// copied into the registry under a plain tag.
	src, err := name.ParseReference(p.Addr+"/"+p.repo+":"+p.tag+"--"+p.sel, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(src)
	if err != nil {
		return fmt.Errorf("read partition: %w", err)
	}
	dst, err := name.ParseReference(b.registry+"/"+p.repo+":prebuilt", name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(dst, img); err != nil {
		return fmt.Errorf("push the pre-built partition: %w", err)
	}
	if _, d, err := getManifest("http://"+b.registry, p.repo, "prebuilt"); err != nil || d != p.partDig {
		return fmt.Errorf("pre-built copy has digest %s, the partition %s (%v)", d, p.partDig, err)
	}

	viaProxy, err := newCounter(p.Addr)
	if err != nil {
		return err
	}
	defer viaProxy.ln.Close()
	direct, err := newCounter(b.registry)
	if err != nil {
		return err
	}
	defer direct.ln.Close()
	// "proxy, plain tag" pulls the pre-built copy through the proxy: the
	// same pass-through of layers without partitioning, which tells the
	// cost of the extra hop from the cost of making the partition.
	refs := map[string]string{
		"proxy":            viaProxy.addr() + "/" + p.repo + ":" + p.tag + "--" + p.sel,
		"direct":           direct.addr() + "/" + p.repo + ":prebuilt",
		"proxy, plain tag": viaProxy.addr() + "/" + p.repo + ":prebuilt",
	}
	counters := map[string]*counter{"proxy": viaProxy, "direct": direct, "proxy, plain tag": viaProxy}
	times := map[string][]float64{}
	bytes := map[string][]float64{}
	// Pulls are short and noisy: -pulls of each, more while the two
	// ratio statistics disagree on the target (morePulls).
	for run := 0; b.morePulls(run, times["proxy"], times["direct"], 1.02); run++ {
		for _, k := range runOrder([]string{"proxy", "direct", "proxy, plain tag"}, run) {
			ns := fmt.Sprintf("tdfs-bench-%x-%s-%d", b.seed&0xffffff, strings.ReplaceAll(strings.ReplaceAll(k, ",", ""), " ", "-"), run)
			ctr := func(log string, args ...string) (time.Duration, error) {
				_, d, err := b.cmd(log, "ctr", append([]string{"--address", ctrAddr, "--namespace", ns}, args...)...)
				return d, err
			}
			c := counters[k]
			before := c.n.Load()
			d, err := ctr(fmt.Sprintf("4-pull-%s-r%d", strings.ReplaceAll(strings.ReplaceAll(k, ",", ""), " ", "-"), run), "images", "pull", "--plain-http", refs[k])
			if err != nil {
				return err
			}
			times[k] = append(times[k], d.Seconds())
			c.settled()
			bytes[k] = append(bytes[k], float64(c.n.Load()-before)/mb)
			// Drop the image and let containerd collect its content and
			// snapshots, so the next run's content store is empty again.
			if _, err := ctr("", "images", "rm", "--sync", refs[k]); err != nil {
				return err
			}
			_, _ = ctr("", "namespaces", "rm", ns)
		}
	}
	b.stopContainerd()
	b.add(&Row{Exp: 4, Key: "pull/time", Name: "partition pull (" + p.sel + ") via proxy vs same image direct, time", Unit: "s",
		Ours: times["proxy"], Peer: "direct", PeerVals: times["direct"], RatioKind: Relative, Target: "≤1.02×", TargetMax: 1.02,
		Detail: fmt.Sprintf("%d pulls each, ctr images pull --plain-http (fetch and unpack) into a fresh namespace of a containerd with isolated content sharing; image, content and snapshots collected after each pull", len(times["direct"]))})
	b.add(&Row{Exp: 4, Key: "pull/hop", Name: "pre-built image pulled through the proxy (pass-through only) vs direct, time", Unit: "s",
		Ours: times["proxy, plain tag"], Peer: "direct", PeerVals: times["direct"], RatioKind: Relative,
		Detail: "the extra hop alone: same image, same client, no partitioning"})
	b.add(&Row{Exp: 4, Key: "pull/bytes", Name: "partition pull via proxy vs same image direct, bytes downloaded", Unit: "MB",
		Ours: bytes["proxy"], Peer: "direct", PeerVals: bytes["direct"], RatioKind: Relative,
		Detail: fmt.Sprintf("counted on the loopback connections; the full field is %.0f MB", b.totalBytes()/mb)})
	return nil
}

// startContainerd starts a containerd of the benchmark's own whose
// namespaces do not share content ("isolated"): a pull into a new namespace
// downloads every blob even if an earlier pull left it on disk. (The shared
// default made a pull skip a layer now and then.)
func (b *bench) startContainerd() (string, error) {
	dir := filepath.Join(b.work, "containerd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		return "", err
	}
	p := &testenv.Proc{Name: "containerd (see logs/containerd.log)", Bin: "containerd", Args: []string{"--config", filepath.Join(dir, "config.toml")},
		Log: filepath.Join(b.out, "logs", "containerd.log"), Ready: func() bool {
			_, _, err := b.cmd("", "ctr", "--address", sock, "version")
			return err == nil
		}}
	if err := p.Start(); err != nil {
		return "", err
	}
	b.ctrd, b.ctrdDir = p, dir
	return sock, nil
}

// stopContainerd stops the benchmark's containerd and unmounts what it left.
func (b *bench) stopContainerd() {
	if b.ctrd == nil {
		return
	}
	b.ctrd.Stop()
	if dt, err := os.ReadFile("/proc/mounts"); err == nil {
		var mounts []string
		for _, l := range strings.Split(string(dt), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], b.ctrdDir+"/") {
				mounts = append(mounts, f[1])
			}
		}
		slices.Sort(mounts)
		for _, m := range slices.Backward(mounts) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	b.ctrd = nil
}

// timedGet does one GET and returns its latency in ms.
func timedGet(url string, accept bool) (float64, error) {
	return timedReq(http.MethodGet, url, accept)
}

// timedReq does one request and returns its latency in ms.
func timedReq(method, url string, accept bool) (float64, error) {
	req, _ := http.NewRequest(method, url, nil)
	if accept {
		req.Header.Set("Accept", testenv.ManifestAccept)
	}
	start := time.Now()
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return float64(d.Microseconds()) / 1000, err
}

// selections returns n distinct partition selections of the field: every
// rectangle, then pairs of rectangles neither of which covers the other.
func (b *bench) selections(n int) []string {
	rows := (b.splits + b.cols - 1) / b.cols
	var rects []field.Rect
	for t := range rows {
		for bt := t; bt < rows; bt++ {
			for l := range b.cols {
				for r := l; r < b.cols; r++ {
					rects = append(rects, field.Rect{Top: t, Left: l, Bottom: bt, Right: r})
				}
			}
		}
	}
	seen := map[string]bool{}
	var out []string
	try := func(rs ...field.Rect) {
		s, err := field.NewSelection(rs...)
		if err != nil || seen[s.String()] || len(out) >= n {
			return
		}
		seen[s.String()] = true
		out = append(out, s.String())
	}
	for _, r := range rects {
		try(r)
	}
	for i := range rects {
		for j := i + 1; j < len(rects) && len(out) < n; j++ {
			try(rects[i], rects[j])
		}
	}
	return out
}

// Experiment 5: manifest latency and throughput through the proxy versus
// the registry, and blob pass-through.
func (b *bench) proxyLatency() error {
	p, err := b.startProxy()
	if err != nil {
		return err
	}
	reg, prx := "http://"+b.registry+"/v2/"+p.repo, "http://"+p.Addr+"/v2/"+p.repo
	// The same proxy with -tag-freshness 0: a repeated tag always costs
	// its upstream HEAD (the behaviour before the freshness window).
	addr0, stopNoFresh, err := b.extraProxy("proxy-no-freshness", b.registry, "-tag-freshness", "0")
	if err != nil {
		return err
	}
	defer stopNoFresh()
	prx0 := "http://" + addr0 + "/v2/" + p.repo
	n := b.requests
	sels := b.selections(n * b.runs)
	type fig struct{ p50, p99 []float64 }
	figs := map[string]*fig{}
	rec := func(k string, lat []float64) {
		if figs[k] == nil {
			figs[k] = &fig{}
		}
		figs[k].p50 = append(figs[k].p50, percentile(lat, 50))
		figs[k].p99 = append(figs[k].p99, percentile(lat, 99))
	}
	series := func(method string, count int, url func(i int) string) ([]float64, error) {
		var lat []float64
		for i := range count {
			ms, err := timedReq(method, url(i), true)
			if err != nil {
				return nil, err
			}
			lat = append(lat, ms)
		}
		return lat, nil
	}
	for run := range b.runs {
		// Warm the connections.
		if _, err := series(http.MethodGet, 5, func(int) string { return reg + "/manifests/" + p.tag }); err != nil {
			return err
		}
		if _, err := series(http.MethodGet, 5, func(int) string { return prx + "/manifests/" + p.tag + "--" + p.sel }); err != nil {
			return err
		}
		if _, err := series(http.MethodGet, 5, func(int) string { return prx0 + "/manifests/" + p.tag + "--" + p.sel }); err != nil {
			return err
		}
		cold := sels[min(len(sels), run*len(sels)/b.runs):min(len(sels), (run+1)*len(sels)/b.runs)]
		get, head := http.MethodGet, http.MethodHead
		steps := []struct {
			key    string
			method string
			count  int
			url    func(i int) string
		}{
			{"direct tag", get, n, func(int) string { return reg + "/manifests/" + p.tag }},
			{"direct tag HEAD", head, n, func(int) string { return reg + "/manifests/" + p.tag }},
			{"proxy tag, first request for a selection", get, len(cold), func(i int) string { return prx + "/manifests/" + p.tag + "--" + cold[i] }},
			{"proxy tag, repeated selection", get, n, func(int) string { return prx + "/manifests/" + p.tag + "--" + p.sel }},
			{"proxy tag, repeated selection, -tag-freshness 0", get, n, func(int) string { return prx0 + "/manifests/" + p.tag + "--" + p.sel }},
			{"direct by digest", get, n, func(int) string { return reg + "/manifests/" + p.srcDigest }},
			{"proxy by digest (stored)", get, n, func(int) string { return prx + "/manifests/" + p.partDig }},
		}
		for _, s := range steps {
			lat, err := series(s.method, s.count, s.url)
			if err != nil {
				return err
			}
			rec(s.key, lat)
		}
	}
	overhead := func(ours, peer string, limit float64, target string) {
		o, d := figs[ours], figs[peer]
		var over50, over99 []float64
		for i := range o.p50 {
			over50 = append(over50, o.p50[i]-d.p50[i])
			over99 = append(over99, o.p99[i]-d.p99[i])
		}
		met := median(over50) < limit
		b.add(&Row{Exp: 5, Name: "manifest p50, " + ours, Unit: "ms", Ours: o.p50, Peer: peer, PeerVals: d.p50, RatioKind: Relative,
			Target: target, Met: &met,
			Detail: fmt.Sprintf("added by the proxy: p50 %s ms, p99 %s ms", fmtStat(over50, ""), fmtStat(over99, ""))})
		b.add(&Row{Exp: 5, Name: "manifest p99, " + ours, Unit: "ms", Ours: o.p99, Peer: peer, PeerVals: d.p99, RatioKind: Relative})
	}
	overhead("proxy tag, first request for a selection", "direct tag", 10, "adds <10 ms (p50)")
	overhead("proxy tag, repeated selection", "direct tag", 1, "adds <1 ms (p50)")
	// A repeated tag costs one upstream HEAD of the base tag: its floor.
	overhead("proxy tag, repeated selection", "direct tag HEAD", 1, "adds <1 ms (p50)")
	overhead("proxy tag, repeated selection, -tag-freshness 0", "direct tag HEAD", 1, "adds <1 ms (p50)")
	overhead("proxy by digest (stored)", "direct by digest", 1, "adds <1 ms (p50)")

	// Throughput under concurrency: a bounded number of requests.
	total := n * 5
	for _, c := range b.conc {
		figsT := map[string][]float64{}
		for run := range b.runs {
			for _, k := range runOrder([]string{"proxy", "direct"}, run) {
				url := reg + "/manifests/" + p.srcDigest
				if k == "proxy" {
					url = prx + "/manifests/" + p.partDig
				}
				rps, err := hammer(b.ctx, total, c, url)
				if err != nil {
					return err
				}
				figsT[k] = append(figsT[k], rps)
			}
		}
		b.add(&Row{Exp: 5, Name: fmt.Sprintf("stored manifest throughput, %d clients", c), Unit: "req/s",
			Ours: figsT["proxy"], Peer: "direct", PeerVals: figsT["direct"], RatioKind: Relative,
			Detail: fmt.Sprintf("%d GETs by digest per figure", total)})
	}
	c := slices.Max(b.conc)
	figsT := map[string][]float64{}
	for run := range b.runs {
		for _, k := range runOrder([]string{"proxy", "direct"}, run) {
			url := reg + "/manifests/" + p.tag
			if k == "proxy" {
				url = prx + "/manifests/" + p.tag + "--" + p.sel
			}
			rps, err := hammer(b.ctx, total, c, url)
			if err != nil {
				return err
			}
			figsT[k] = append(figsT[k], rps)
		}
	}
	b.add(&Row{Exp: 5, Name: fmt.Sprintf("partition tag throughput, %d clients", c), Unit: "req/s",
		Ours: figsT["proxy"], Peer: "direct tag", PeerVals: figsT["direct"], RatioKind: Relative,
		Detail: fmt.Sprintf("%d GETs per figure", total)})

	if err := b.blobPassThrough(p); err != nil {
		return err
	}
	if err := b.blobRedirects(p); err != nil {
		return err
	}
	if *proxyMemoryLoad {
		return b.proxyMemory()
	}
	return nil
}

// proxyMemoryLoad opts into experiment 5's memory figure: it takes about a
// minute per run on 2 cores, longer than the rest of the experiment.
var proxyMemoryLoad = flag.Bool("proxy-memory", false, "experiment 5: also send 64 concurrent requests for distinct partitions of an image with a 16 MiB config and report the proxy's peak RSS (about a minute per run)")

// proxyPeakRSSBound is the bound docs/proxy.md gives (and
// TestProxyMemoryUnderLoad checks) for the proxy's peak RSS under this load.
const proxyPeakRSSBound = 512

// proxyMemory runs TestProxyMemoryUnderLoad's load (tests/testenv) against
// a fresh proxy with default flags per run, since peak RSS is the
// process's high-water mark: 64 concurrent GETs, each for a different
// one-cell partition of an 8×8 field image whose config is at the default
// cap. Every request must end in 200 or in 503 with Retry-After.
func (b *bench) proxyMemory() error {
	img, cells := testenv.LargeConfigImage()
	repo := fmt.Sprintf("bench/large-config-%x", b.seed&0xffffff)
	if err := testenv.PushImage(b.registry, repo, "v1", img); err != nil {
		return fmt.Errorf("push the large-config image: %w", err)
	}
	var peaks, secs, oks []float64
	for run := range b.runs {
		b.logf("proxy memory load, run %d/%d", run+1, b.runs)
		px, err := testenv.StartProxy(filepath.Join(b.bin, "2dfs-proxy"), b.registry, filepath.Join(b.out, "logs", fmt.Sprintf("proxy-memory-%d.log", run)))
		if err != nil {
			return err
		}
		res := testenv.SelectionLoad(px.Addr, repo, "v1", cells)
		peak, err := px.PeakRSS()
		px.Stop()
		if err != nil {
			return err
		}
		if problems := res.Problems(); len(problems) > 0 {
			return fmt.Errorf("proxy memory load: %d of %d requests failed, first: %s", len(problems), len(cells), problems[0])
		}
		peaks = append(peaks, float64(peak)/(1<<20))
		secs = append(secs, res.Elapsed.Seconds())
		oks = append(oks, float64(res.Counts()[http.StatusOK]))
	}
	met := median(peaks) <= proxyPeakRSSBound
	b.add(&Row{Exp: 5, Name: fmt.Sprintf("proxy peak RSS, %d distinct selections at once, %d MiB config", len(cells), len(img.Config)>>20), Unit: "MiB",
		Ours: peaks, Target: fmt.Sprintf("≤%d MiB", proxyPeakRSSBound), Met: &met,
		Detail: fmt.Sprintf("a fresh proxy with default flags per run; answered 200 (the rest 503 with Retry-After): %s of %d", fmtStat(oks, ""), len(cells))})
	b.add(&Row{Exp: 5, Name: fmt.Sprintf("time for %d distinct selections at once, %d MiB config", len(cells), len(img.Config)>>20), Unit: "s",
		Ours: secs, Detail: "from the first request sent to the last answer"})
	return nil
}

// hammer sends total GETs from conc clients and returns requests/second.
func hammer(ctx context.Context, total, conc int, url string) (float64, error) {
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range conc {
		g.Go(func() error {
			for next.Add(1) <= int64(total) && ctx.Err() == nil {
				if _, err := timedGet(url, true); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(total) / time.Since(start).Seconds(), nil
}
