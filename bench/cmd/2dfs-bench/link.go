package main

// Experiment 8 (opt-in): blob pass-through over a real link. On loopback
// every hop costs CPU that the registry and the client share on the same
// cores, so a proxy can never match a direct pull there (blobPassThrough
// shows a bare TCP forwarder at 0.6–0.8× of direct). Deployed, the proxy
// runs next to the registry and the client is across a network. This
// experiment builds that: two network namespaces joined by a veth pair,
// the registry (and a proxy, and a bare TCP forwarder) in one, the client
// (and another proxy and forwarder, as a client-side cache would sit) in
// the other, the link optionally shaped with tc to a rate (tbf) and a
// delay (netem). Every variant crosses the link exactly once.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// linkClientEnv makes the benchmark binary the link experiment's client
// (linkClientMain), run inside the client's namespace.
const linkClientEnv = "TDFS_BENCH_LINK_CLIENT"

// forwardListenEnv is the address the bare TCP forwarder listens on
// (default 127.0.0.1:0).
const forwardListenEnv = "TDFS_BENCH_FORWARD_LISTEN"

// nsPrefix names the benchmark's namespaces: tdfsb<pid>-r and -c, so a
// later run can remove those of a run that died (their pid is gone).
const nsPrefix = "tdfsb"

// Addresses inside the private namespaces: nothing else lives there, so
// fixed ports and a fixed subnet cannot collide.
const (
	linkRegIP  = "10.201.0.1"
	linkCliIP  = "10.201.0.2"
	linkReg    = ":5000"
	linkProxy  = ":5001"
	linkFwd    = ":5002"
	linkBefore = ":5003" // the -link-before proxy
	linkH1     = ":5004" // with -link-tls: our proxy with HTTP/2 to the upstream off
	linkRepo   = "bench/link"
	linkUpload = 8 << 20 // bytes per PATCH of the blob push
)

// linkShape is one shaping of the link: unshaped veth, a rate (tbf) and
// optionally a one-way delay (netem) on both ends.
type linkShape struct {
	name  string
	rate  string // tc rate ("1gbit"), "" for none
	delay string // tc time ("250us"), "" for none
}

var shapeRE = regexp.MustCompile(`^(?:veth|(\d+(?:\.\d+)?[kmg]bit))(?:@(\d+(?:\.\d+)?(?:us|ms)))?$`)

// parseShapes reads -link-shapes: veth, RATE (1gbit, 10gbit, 500mbit) or
// either with @DELAY (one-way, each direction: 1gbit@250us).
func parseShapes(s string) ([]linkShape, error) {
	var out []linkShape
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		m := shapeRE.FindStringSubmatch(f)
		if m == nil {
			return nil, fmt.Errorf("-link-shapes: %q is not veth, a rate like 1gbit or 500mbit, or either with @DELAY like @250us", f)
		}
		out = append(out, linkShape{name: f, rate: m[1], delay: m[2]})
	}
	return out, nil
}

// tcBurst is the tbf bucket for a rate: 4 ms of it (a 250 Hz timer's tick),
// at least 64 KiB so one GSO packet fits.
func tcBurst(rate string) (string, error) {
	n, err := strconv.ParseFloat(strings.TrimRight(rate, "kmgbit"), 64)
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasSuffix(rate, "gbit"):
		n *= 1e9
	case strings.HasSuffix(rate, "mbit"):
		n *= 1e6
	default:
		n *= 1e3
	}
	return strconv.Itoa(max(64<<10, int(n/8*0.004))), nil
}

// netLink is the two namespaces, the veth pair and what runs in them.
type netLink struct {
	b      *bench
	regNS  string
	cliNS  string
	procs  []*testenv.Proc
	client *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	scheme string // of the registry: https with -link-tls
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// removeStaleNamespaces deletes the namespaces of earlier runs whose
// benchmark process is gone (killed before its cleanup ran).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		_ = runCmd("ip", "netns", "del", f[0])
	}
}

// newNetLink makes the namespaces and the veth pair, or says why it cannot
// (not root, no ip(8), no namespace support).
func (b *bench) newNetLink() (*netLink, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (ip netns)")
	}
	for _, t := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("needs %s (iproute2): %v", t, err)
		}
	}
	removeStaleNamespaces()
	pid := os.Getpid()
	l := &netLink{b: b, regNS: fmt.Sprintf("%s%d-r", nsPrefix, pid), cliNS: fmt.Sprintf("%s%d-c", nsPrefix, pid)}
	vr, vc := fmt.Sprintf("tb%dr", pid), fmt.Sprintf("tb%dc", pid)
	steps := [][]string{
		{"netns", "add", l.regNS},
		{"netns", "add", l.cliNS},
		{"link", "add", vr, "netns", l.regNS, "type", "veth", "peer", "name", vc, "netns", l.cliNS},
		{"-n", l.regNS, "link", "set", vr, "name", "veth0"},
		{"-n", l.cliNS, "link", "set", vc, "name", "veth0"},
		{"-n", l.regNS, "addr", "add", linkRegIP + "/24", "dev", "veth0"},
		{"-n", l.cliNS, "addr", "add", linkCliIP + "/24", "dev", "veth0"},
	}
	for _, ns := range []string{l.regNS, l.cliNS} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"}, []string{"-n", ns, "link", "set", "veth0", "up"})
	}
	for _, s := range steps {
		if err := runCmd("ip", s...); err != nil {
			l.close()
			return nil, fmt.Errorf("network namespaces unavailable: %w", err)
		}
	}
	return l, nil
}

// shape sets the qdisc of both ends of the link.
func (l *netLink) shape(s linkShape) error {
	for _, ns := range []string{l.regNS, l.cliNS} {
		_ = runCmd("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "veth0", "root")
		parent := []string{"root"}
		if s.rate != "" {
			burst, err := tcBurst(s.rate)
			if err != nil {
				return err
			}
			if err := runCmd("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "veth0", "root", "handle", "1:",
				"tbf", "rate", s.rate, "burst", burst, "latency", "20ms"); err != nil {
				return err
			}
			parent = []string{"parent", "1:1"}
		}
		if s.delay != "" {
			args := append([]string{"netns", "exec", ns, "tc", "qdisc", "add", "dev", "veth0"}, parent...)
			if err := runCmd("ip", append(args, "handle", "10:", "netem", "delay", s.delay, "limit", "100000")...); err != nil {
				return fmt.Errorf("a delay needs netem (sch_netem) in the kernel; shape without @DELAY where it is missing: %w", err)
			}
		}
	}
	return nil
}

// start runs bin with args in namespace ns (ip netns exec execs it: the
// process is ip's, and dies with the benchmark).
func (l *netLink) start(ns, name, bin string, env []string, args ...string) error {
	p, err := testenv.StartProc(name, "ip", filepath.Join(l.b.out, "logs", "link-"+name+".log"), env,
		append([]string{"netns", "exec", ns, bin}, args...)...)
	if err != nil {
		return err
	}
	l.procs = append(l.procs, p)
	return nil
}

func (l *netLink) close() {
	if l.client != nil {
		l.in.Close()
		_ = l.client.Process.Kill()
		_ = l.client.Wait()
	}
	for _, p := range l.procs {
		p.Stop()
	}
	for _, ns := range []string{l.regNS, l.cliNS} {
		_ = runCmd("ip", "netns", "del", ns) // takes its end of the veth pair along
	}
}

// linkRequest is one command to the client process; linkAnswer its answer.
type linkRequest struct {
	Op   string `json:"op"` // wait, push, wave
	URL  string `json:"url"`
	Conc int    `json:"conc,omitempty"`
	Reps int    `json:"reps,omitempty"`
	Size int64  `json:"size,omitempty"`
	Seed uint64 `json:"seed,omitempty"`
}

type linkAnswer struct {
	MBps   float64 `json:"mbps,omitempty"`
	Digest string  `json:"digest,omitempty"`
	Err    string  `json:"err,omitempty"`
}

func (l *netLink) ask(r linkRequest) (linkAnswer, error) {
	dt, _ := json.Marshal(r)
	if _, err := l.in.Write(append(dt, '\n')); err != nil {
		return linkAnswer{}, fmt.Errorf("link client: %w", err)
	}
	line, err := l.out.ReadBytes('\n')
	if err != nil {
		return linkAnswer{}, fmt.Errorf("link client: %w", err)
	}
	var a linkAnswer
	if err := json.Unmarshal(line, &a); err != nil {
		return a, fmt.Errorf("link client: %q: %w", line, err)
	}
	if a.Err != "" {
		return a, fmt.Errorf("link client, %s %s: %s", r.Op, r.URL, a.Err)
	}
	return a, nil
}

// linkClientMain answers linkRequests on stdin, one JSON line each.
func linkClientMain() {
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var r linkRequest
		var a linkAnswer
		err := json.Unmarshal(in.Bytes(), &r)
		if err == nil {
			switch r.Op {
			case "wait":
				err = testenv.WaitUntil(r.URL, nil, func() bool { s := testenv.HTTPStatus(r.URL); return s == 200 || s == 401 })
			case "push":
				a.Digest, err = pushRandomBlob(r.URL, r.Size, r.Seed)
			case "wave":
				a.MBps, err = blobWave(r.URL, r.Conc, r.Reps, r.Size)
			default:
				err = fmt.Errorf("unknown op %q", r.Op)
			}
		}
		if err != nil {
			a.Err = err.Error()
		}
		_ = enc.Encode(a)
	}
}

// pushRandomBlob uploads size random bytes (ChaCha8 from seed) as a blob
// of repository base (http://host/v2/<repo>) in chunks, and returns its digest.
func pushRandomBlob(base string, size int64, seed uint64) (string, error) {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(s).Read(data)
	d := digest.FromBytes(data)
	u, err := url.Parse(base + "/blobs/uploads/")
	if err != nil {
		return "", err
	}
	resp, err := httpc.Post(u.String(), "", nil)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("start upload: %s", resp.Status)
	}
	loc, err := u.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	for off := int64(0); off < size; off += linkUpload {
		end := min(size, off+linkUpload)
		req, _ := http.NewRequest(http.MethodPatch, loc.String(), bytes.NewReader(data[off:end]))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		resp, err := httpc.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return "", fmt.Errorf("upload chunk at %d: %s", off, resp.Status)
		}
		if loc, err = loc.Parse(resp.Header.Get("Location")); err != nil {
			return "", err
		}
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), nil)
	resp, err = httpc.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("finish upload: %s", resp.Status)
	}
	return d.String(), nil
}

// startLink sets the link up with a registry, a proxy and a forwarder on
// each side, the client process in the client's namespace, and a random
// blob of size bytes in the registry.
func (b *bench) startLink(size int64) (*netLink, string, error) {
	l, err := b.newNetLink()
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*netLink, string, error) { l.close(); return nil, "", err }
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	dir := filepath.Join(b.work, "link-registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "data"), linkReg)
	scheme, env := "http", []string(nil)
	if b.linkTLS {
		// A self-signed certificate for both of the registry's
		// addresses, trusted by every process through SSL_CERT_FILE.
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if err := selfSigned(cert, key, linkRegIP, "127.0.0.1"); err != nil {
			return fail(err)
		}
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
		scheme, env = "https", []string{"SSL_CERT_FILE=" + cert}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return fail(err)
	}
	proxy := filepath.Join(b.bin, "2dfs-proxy")
	starts := []struct {
		ns, name, bin string
		env           []string
		args          []string
	}{
		// (no OpenTelemetry export: it retries a collector that is not
		// there every few seconds)
		{l.regNS, "registry", filepath.Join(b.tools, "registry"), []string{"OTEL_TRACES_EXPORTER=none"}, []string{"serve", filepath.Join(dir, "config.yml")}},
		{l.regNS, "proxy-registry-side", proxy, env, []string{"-listen", linkProxy, "-upstream", scheme + "://127.0.0.1" + linkReg, "-store-dir", ""}},
		{l.cliNS, "proxy-client-side", proxy, env, []string{"-listen", "127.0.0.1" + linkProxy, "-upstream", scheme + "://" + linkRegIP + linkReg, "-store-dir", ""}},
		{l.regNS, "forwarder-registry-side", exe, []string{forwardEnv + "=127.0.0.1" + linkReg, forwardListenEnv + "=" + linkFwd}, nil},
		{l.cliNS, "forwarder-client-side", exe, []string{forwardEnv + "=" + linkRegIP + linkReg, forwardListenEnv + "=127.0.0.1" + linkFwd}, nil},
	}
	if b.linkBefore != "" {
		starts = append(starts, []struct {
			ns, name, bin string
			env           []string
			args          []string
		}{
			{l.regNS, "before-registry-side", b.linkBefore, env, []string{"-listen", linkBefore, "-upstream", scheme + "://127.0.0.1" + linkReg, "-store-dir", ""}},
			{l.cliNS, "before-client-side", b.linkBefore, env, []string{"-listen", "127.0.0.1" + linkBefore, "-upstream", scheme + "://" + linkRegIP + linkReg, "-store-dir", ""}},
		}...)
	}
	if b.linkTLS {
		// net/http speaks HTTP/2 to a TLS upstream that offers it: all
		// concurrent blobs on one connection. The same proxy with it
		// off (GODEBUG) shows what that costs or gains.
		h1 := append([]string{"GODEBUG=http2client=0"}, env...)
		starts = append(starts, []struct {
			ns, name, bin string
			env           []string
			args          []string
		}{
			{l.regNS, "h1-registry-side", proxy, h1, []string{"-listen", linkH1, "-upstream", scheme + "://127.0.0.1" + linkReg, "-store-dir", ""}},
			{l.cliNS, "h1-client-side", proxy, h1, []string{"-listen", "127.0.0.1" + linkH1, "-upstream", scheme + "://" + linkRegIP + linkReg, "-store-dir", ""}},
		}...)
	}
	for _, s := range starts {
		if err := l.start(s.ns, s.name, s.bin, s.env, s.args...); err != nil {
			return fail(err)
		}
	}
	l.client = exec.Command("ip", "netns", "exec", l.cliNS, exe)
	l.client.Env = append(append(os.Environ(), linkClientEnv+"=1"), env...)
	l.client.Stderr = os.Stderr
	l.client.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if l.in, err = l.client.StdinPipe(); err != nil {
		return fail(err)
	}
	out, err := l.client.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	l.out = bufio.NewReader(out)
	if err := l.client.Start(); err != nil {
		l.client = nil
		return fail(err)
	}
	ready := []string{scheme + "://" + linkRegIP + linkReg + "/v2/", "http://" + linkRegIP + linkProxy + "/livez", "http://127.0.0.1" + linkProxy + "/livez"}
	if b.linkBefore != "" {
		ready = append(ready, "http://"+linkRegIP+linkBefore+"/livez", "http://127.0.0.1"+linkBefore+"/livez")
	}
	if b.linkTLS {
		ready = append(ready, "http://"+linkRegIP+linkH1+"/livez", "http://127.0.0.1"+linkH1+"/livez")
	}
	for _, u := range ready {
		if _, err := l.ask(linkRequest{Op: "wait", URL: u}); err != nil {
			return fail(err)
		}
	}
	a, err := l.ask(linkRequest{Op: "push", URL: scheme + "://" + linkRegIP + linkReg + "/v2/" + linkRepo, Size: size, Seed: b.seed})
	if err != nil {
		return fail(err)
	}
	l.scheme = scheme
	return l, a.Digest, nil
}

// selfSigned writes a self-signed certificate for ips and its key.
func selfSigned(certFile, keyFile string, ips ...string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "2dfs-bench link registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}

// linkPassThrough is experiment 8: for each shape of the link, a blob
// pulled by the client straight from the registry across the link,
// through the proxy next to the registry (as deployed), through a proxy on
// the client's side, and through a bare TCP forwarder on either side, at
// 1 and 8 clients, interleaved.
func (b *bench) linkPassThrough() error {
	shapes, err := parseShapes(b.linkShapes)
	if err != nil {
		return err
	}
	size := int64(b.linkMiB) << 20
	l, dgst, err := b.startLink(size)
	if err != nil {
		b.logf("exp 8 skipped: %v", err)
		b.res.Notes = append(b.res.Notes, "experiment 8 (pass-through over a link) skipped: "+err.Error())
		return nil
	}
	defer l.close()
	path := "/v2/" + linkRepo + "/blobs/" + dgst
	urls := map[string]string{
		"direct":       l.scheme + "://" + linkRegIP + linkReg + path,
		"proxy@reg":    "http://" + linkRegIP + linkProxy + path,
		"tcp@reg":      l.scheme + "://" + linkRegIP + linkFwd + path,
		"proxy@client": "http://127.0.0.1" + linkProxy + path,
		"tcp@client":   l.scheme + "://127.0.0.1" + linkFwd + path,
	}
	order := []string{"direct", "proxy@reg", "tcp@reg", "proxy@client", "tcp@client"}
	if b.linkBefore != "" {
		urls["before@reg"] = "http://" + linkRegIP + linkBefore + path
		urls["before@client"] = "http://127.0.0.1" + linkBefore + path
		order = append(order, "before@reg", "before@client")
	}
	link := "link"
	if b.linkTLS {
		urls["h1@reg"] = "http://" + linkRegIP + linkH1 + path
		urls["h1@client"] = "http://127.0.0.1" + linkH1 + path
		order = append(order, "h1@reg", "h1@client")
		link = "link, registry on HTTPS"
	}
	wave := func(u string, conc, reps int, size int64) (float64, error) {
		if err := b.ctx.Err(); err != nil {
			return 0, err // interrupted: stop, and let close remove the namespaces
		}
		a, err := l.ask(linkRequest{Op: "wave", URL: u, Conc: conc, Reps: reps, Size: size})
		return a.MBps, err
	}
	for _, s := range shapes {
		if err := l.shape(s); err != nil {
			return fmt.Errorf("shape the link %s: %w", s.name, err)
		}
		for _, c := range []int{1, 8} {
			reps := 3
			if c > 1 {
				reps = 1
			}
			f, err := b.blobFiguresWith(wave, urls, order, c, reps, size)
			if err != nil {
				return err
			}
			for _, side := range []string{"reg", "client"} {
				where := map[string]string{"reg": "beside the registry", "client": "beside the client"}[side]
				px, tcp := f["proxy@"+side], f["tcp@"+side]
				b.add(&Row{Exp: 8, Key: fmt.Sprintf("link/%s/%s/%d", s.name, side, c),
					Name: fmt.Sprintf("blob pass-through over a %s %s, proxy %s, %d client(s)", s.name, link, where, c), Unit: "MB/s",
					Ours: px, Peer: "direct over the link", PeerVals: f["direct"], RatioKind: Relative, TargetMin: 0.95, Target: "≥0.95×",
					Detail: fmt.Sprintf("%d client(s) × %d GET(s) of a %d MiB blob per figure; a bare TCP forwarder %s: %s of direct, the proxy %s of it",
						c, reps, b.linkMiB, where, fmtStat(ratios(tcp, f["direct"]), "×"), fmtStat(ratios(px, tcp), "×"))})
				if b.linkBefore != "" {
					b.add(&Row{Exp: 8, Key: fmt.Sprintf("link/%s/%s/%d/before", s.name, side, c),
						Name: fmt.Sprintf("blob pass-through over a %s %s, proxy %s, %d client(s), against the proxy before", s.name, link, where, c), Unit: "MB/s",
						Ours: px, Peer: "proxy before (-link-before)", PeerVals: f["before@"+side], RatioKind: Relative,
						Detail: fmt.Sprintf("the proxy before against direct: %s", fmtStat(ratios(f["before@"+side], f["direct"]), "×"))})
				}
				if b.linkTLS {
					b.add(&Row{Exp: 8, Key: fmt.Sprintf("link/%s/%s/%d/h1", s.name, side, c),
						Name: fmt.Sprintf("blob pass-through over a %s %s, proxy %s, %d client(s), HTTP/1.1 upstream", s.name, link, where, c), Unit: "MB/s",
						Ours: f["h1@"+side], Peer: "the same proxy, HTTP/2 upstream (net/http's default)", PeerVals: px, RatioKind: Relative,
						Detail: fmt.Sprintf("HTTP/1.1 upstream (GODEBUG=http2client=0) against direct: %s", fmtStat(ratios(f["h1@"+side], f["direct"]), "×"))})
				}
			}
		}
	}
	return nil
}
