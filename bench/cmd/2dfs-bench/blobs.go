package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// blobWave GETs url from conc clients at once, reps times each, following
// redirects, and returns MB/s over the whole wave.
func blobWave(url string, conc, reps int, size int64) (float64, error) {
	var g errgroup.Group
	start := time.Now()
	for range conc {
		g.Go(func() error {
			for range reps {
				resp, err := httpc.Get(url)
				if err != nil {
					return err
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK || n != size {
					return fmt.Errorf("GET %s: %s, %d bytes of %d", url, resp.Status, n, size)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(size) * float64(conc*reps) / mb / time.Since(start).Seconds(), nil
}

// blobFigures measures each of urls (by name) in turn per run, rotating
// the order, after one warm-up GET each, and returns the MB/s per run.
// Transfers are short and the machine is noisy: three times the runs.
func (b *bench) blobFigures(urls map[string]string, order []string, conc, reps int, size int64) (map[string][]float64, error) {
	return b.blobFiguresWith(blobWave, urls, order, conc, reps, size)
}

// blobFiguresWith is blobFigures with the waves made by wave (experiment 8
// makes them from another network namespace).
func (b *bench) blobFiguresWith(wave func(url string, conc, reps int, size int64) (float64, error),
	urls map[string]string, order []string, conc, reps int, size int64) (map[string][]float64, error) {
	for _, k := range order {
		if _, err := wave(urls[k], 1, 1, size); err != nil {
			return nil, err
		}
	}
	out := map[string][]float64{}
	for run := range 3 * b.runs {
		for _, k := range runOrder(order, run) {
			v, err := wave(urls[k], conc, reps, size)
			if err != nil {
				return nil, err
			}
			out[k] = append(out[k], v)
		}
	}
	return out, nil
}

// forwardEnv makes the benchmark binary a bare TCP forwarder to the
// host:port it holds (see startForwarder).
const forwardEnv = "TDFS_BENCH_FORWARD"

// forwardMain forwards connections on a loopback port (or the address in
// forwardListenEnv) to target, printing the port's address first, until
// killed.
func forwardMain(target string) {
	c, err := newCounterOn(cmp.Or(os.Getenv(forwardListenEnv), "127.0.0.1:0"), target)
	if err != nil {
		fatalf("forwarder: %v", err)
	}
	fmt.Println(c.addr())
	select {}
}

// startForwarder runs this binary as a bare TCP forwarder to target in a
// process of its own (like the proxy: in the benchmark's process it would
// compete with the client for the Go scheduler), and returns its address
// and a function that stops it.
func startForwarder(target string) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), forwardEnv+"="+target)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("forwarder: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// blobPassThrough: the largest layer through the proxy against straight
// from the registry and through a bare TCP forwarder in its own process
// (io.Copy both ways, which splices: the floor of any proxy that is an
// extra hop), at 1 and 8 clients.
func (b *bench) blobPassThrough(p *proxyState) error {
	fwd, stop, err := startForwarder(b.registry)
	if err != nil {
		return err
	}
	defer stop()
	path := "/v2/" + p.repo + "/blobs/" + p.layer
	urls := map[string]string{
		"proxy":  "http://" + p.Addr + path,
		"direct": "http://" + b.registry + path,
		"tcp":    "http://" + fwd + path,
	}
	for _, c := range []int{1, 8} {
		reps := 3
		if c > 1 {
			reps = 1
		}
		f, err := b.blobFigures(urls, []string{"proxy", "direct", "tcp"}, c, reps, p.layerSize)
		if err != nil {
			return err
		}
		detail := fmt.Sprintf("%d client(s) × %d GET(s) of a %.0f MB layer per figure; ratio of medians %.2f×",
			c, reps, float64(p.layerSize)/mb, median(f["proxy"])/median(f["direct"]))
		b.add(&Row{Exp: 5, Name: fmt.Sprintf("blob pass-through, %d client(s)", c), Unit: "MB/s",
			Ours: f["proxy"], Peer: "direct", PeerVals: f["direct"], RatioKind: Relative, Detail: detail})
		b.add(&Row{Exp: 5, Name: fmt.Sprintf("blob pass-through, %d client(s), against a bare TCP forwarder", c), Unit: "MB/s",
			Ours: f["proxy"], Peer: "TCP forwarder", PeerVals: f["tcp"], RatioKind: Relative,
			Detail: fmt.Sprintf("the forwarder (io.Copy both ways, spliced) against direct: %s; it is the floor of any proxy that is one more loopback hop on these cores",
				fmtStat(ratios(f["tcp"], f["direct"]), "×"))})
	}
	return nil
}

func ratios(a, b []float64) []float64 {
	var r []float64
	for i := range min(len(a), len(b)) {
		r = append(r, safeDiv(a[i], b[i]))
	}
	return r
}

// blobRedirects: a registry behind object storage, made of an in-process
// front that answers blob GETs with a 307 to a "signed" URL and passes the
// rest to the benchmark's registry, which also plays storage (the 307 points
// at its own blob URL with a signature query it ignores), so that the bytes
// come from the same server as in the pass-through figures. The layer is
// pulled through the front straight (following the 307), through a proxy
// that relays the redirect (the default), and through one with
// -follow-blob-redirects.
func (b *bench) blobRedirects(p *proxyState) error {
	regURL, _ := url.Parse("http://" + b.registry)
	rp := httputil.NewSingleHostReverseProxy(regURL)
	front, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, r, "http://"+b.registry+r.URL.Path+"?X-Amz-Signature=bench", http.StatusTemporaryRedirect)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	if err != nil {
		return err
	}
	defer front.Close()
	relayAddr, relay, err := b.extraProxy("proxy-relay", front.Addr().String())
	if err != nil {
		return err
	}
	defer relay()
	followAddr, follow, err := b.extraProxy("proxy-follow", front.Addr().String(), "-follow-blob-redirects")
	if err != nil {
		return err
	}
	defer follow()
	path := "/v2/" + p.repo + "/blobs/" + p.layer
	urls := map[string]string{
		"relay":   "http://" + relayAddr + path,
		"follow":  "http://" + followAddr + path,
		"storage": "http://" + front.Addr().String() + path,
	}
	fig, err := b.blobFigures(urls, []string{"relay", "follow", "storage"}, 1, 3, p.layerSize)
	if err != nil {
		return err
	}
	b.add(&Row{Exp: 5, Name: "blob redirected to storage, relayed by the proxy (default)", Unit: "MB/s",
		Ours: fig["relay"], Peer: "registry redirect, direct", PeerVals: fig["storage"], RatioKind: Relative,
		Detail: fmt.Sprintf("GET of a %.0f MB layer, following the 307; ratio of medians %.2f×", float64(p.layerSize)/mb, median(fig["relay"])/median(fig["storage"]))})
	b.add(&Row{Exp: 5, Name: "blob redirected to storage, followed by the proxy (-follow-blob-redirects)", Unit: "MB/s",
		Ours: fig["follow"], Peer: "registry redirect, direct", PeerVals: fig["storage"], RatioKind: Relative,
		Detail: fmt.Sprintf("ratio of medians %.2f×", median(fig["follow"])/median(fig["storage"]))})
	return nil
}

// serve runs h on a loopback port.
func serve(h http.Handler) (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = http.Serve(l, h) }()
	return l, nil
}

// extraProxy starts one more 2dfs-proxy (memory store only) in front of
// upstream (host:port) and returns its address and a function that stops
// it.
func (b *bench) extraProxy(name, upstream string, args ...string) (string, func(), error) {
	px, err := testenv.StartProxy(filepath.Join(b.bin, "2dfs-proxy"), upstream, filepath.Join(b.out, "logs", name+".log"), args...)
	if err != nil {
		return "", nil, err
	}
	return px.Addr, px.Stop, nil
}
