package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// The node-side deploy path of experiment 9: the node's buildkitd uses the
// containerd worker of the node's own containerd, so 2dfs deploy without
// --push puts the assembled image straight into containerd's image store
// (namespace "buildkit"), unpacked, as issue 12 describes a node: no push
// to the registry and no pull back. The registry round-trip rows
// (cir-a/b/c) stay beside these: they are the path of a node whose
// buildkitd is not its runtime's.

// cirNodeVariants are the node-side cases, rotated with cirVariants. The
// "-lock" ones deploy with --lock of the file an earlier deploy of a wrote
// (as a CI pipeline would commit it): no apt-get update, no resolution.
var cirNodeVariants = []string{"node-a", "node-b", "node-c", "node-b-lock", "node-c-lock"}

// cirNodeNS is the containerd namespace of hack/daemons' containerd-worker
// buildkitd: where the deployed image lands.
const cirNodeNS = "buildkit"

// cirNode is one fresh node: a containerd with a new root and state, and a
// buildkitd whose worker is that containerd.
type cirNode struct {
	dir, ctrd, bk string
	proc          *testenv.Proc
}

// startCIRNode starts a fresh node under b.work/nN. The buildkitd's HTTP
// fetches (the .debs) go through the archive proxy, as cirBuildkitd's do.
func (b *bench) startCIRNode(s *cirState) (*cirNode, error) {
	s.nodes++
	// Short: the containerd socket path must fit a sockaddr_un.
	n := &cirNode{dir: filepath.Join(b.work, fmt.Sprintf("n%d", s.nodes))}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	n.ctrd = filepath.Join(n.dir, "containerd.sock")
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
		filepath.Join(n.dir, "containerd-root"), filepath.Join(n.dir, "containerd-state"), n.ctrd)
	if err := os.WriteFile(filepath.Join(n.dir, "containerd.toml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	n.proc = &testenv.Proc{Name: "node containerd (see logs/cir-node-containerd.log)", Bin: "containerd", Args: []string{"--config", filepath.Join(n.dir, "containerd.toml")},
		Log: filepath.Join(b.out, "logs", "cir-node-containerd.log"), Ready: func() bool {
			_, _, err := b.cmd("", "ctr", "--address", n.ctrd, "version")
			return err == nil
		}}
	if err := n.proc.Start(); err != nil {
		n.proc = nil
		n.stop()
		return nil, err
	}
	// The registries every buildkitd reaches over plain HTTP (the counted
	// one among them): hack/daemons reads them from the node's folder.
	regs, err := os.ReadFile(filepath.Join(b.daemons, "registries"))
	if err == nil {
		err = os.WriteFile(filepath.Join(n.dir, "registries"), regs, 0o644)
	}
	if err != nil {
		n.stop()
		return nil, err
	}
	c := exec.Command(filepath.Join(b.root, "hack/daemons"), "buildkitd-containerd", n.dir, "bk")
	c.Env = append(os.Environ(), proxyEnv("http://"+s.archive.ln.Addr().String())...)
	out, err := c.Output()
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("hack/daemons buildkitd-containerd %s: %v\n%s", n.dir, err, testenv.ExitStderr(err))
	}
	n.bk = strings.TrimSpace(string(out))
	return n, nil
}

// proxyEnv sends a daemon's HTTP(S) through proxy; loopback (the
// registry) never is.
func proxyEnv(proxy string) []string {
	return []string{"HTTP_PROXY=" + proxy, "HTTPS_PROXY=" + proxy, "http_proxy=" + proxy, "https_proxy=" + proxy, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost"}
}

// stop stops the node's buildkitd and containerd, unmounts what they left
// and deletes the node.
func (n *cirNode) stop() {
	if dt, err := os.ReadFile(filepath.Join(n.dir, "bk.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(dt))); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if n.proc != nil {
		n.proc.Stop()
	}
	if dt, err := os.ReadFile("/proc/mounts"); err == nil {
		var mounts []string
		for _, l := range strings.Split(string(dt), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], n.dir+"/") {
				mounts = append(mounts, f[1])
			}
		}
		slices.Sort(mounts)
		for _, m := range slices.Backward(mounts) {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	_ = os.RemoveAll(n.dir)
}

// cirNodeDeploy runs 2dfs deploy of app's CIR for platform on the node:
// the image named name lands in the node's containerd, unpacked (ctr
// images pull, the fat side's figure, unpacks too).
func (b *bench) cirNodeDeploy(s *cirState, n *cirNode, app, platform, name, log string, extra ...string) (time.Duration, error) {
	args := append([]string{"deploy", "--addr", n.bk, "--progress", "plain", "--insecure", s.cirRef[app], "--platform", platform,
		"--output", "type=image,name=" + name + ",unpack=true"}, extra...)
	_, d, err := b.cmd(log, filepath.Join(b.bin, "2dfs"), args...)
	return d, err
}

// cirNodeExtra is the deploy flags of a node-side variant for app a:
// --cache-from for (c), --lock of a copy of the committed lock file for
// the -lock ones (a copy: the run must not be able to change the next
// run's lock).
func cirNodeExtra(v, cache, lock string) []string {
	var extra []string
	if strings.HasPrefix(v, "node-c") {
		extra = append(extra, "--cache-from", "type=registry,ref="+cache)
	}
	if strings.HasSuffix(v, "-lock") {
		extra = append(extra, "--lock", lock)
	}
	return extra
}

// runCIRNodeCase measures one node-side variant of one run on a fresh
// node: the time of 2dfs deploy of a until the node's containerd holds it,
// and the bytes it moved. For (b), b is deployed on the same node first
// (untimed, fresh resolution in every variant). In the first run, the
// deployed image is run with ctr run and what it printed is recorded.
func (b *bench) runCIRNodeCase(s *cirState, info *CIRInfo, v string, run int) (cirCase, error) {
	var c cirCase
	n, err := b.startCIRNode(s)
	if err != nil {
		return c, err
	}
	defer n.stop()
	plat := cirPlatforms[0]
	name := fmt.Sprintf("%s/bench/cir-node-%x-%s-r%d", s.reg.addr(), b.seed&0xffffff, v, run)
	measure := func(fn func() (time.Duration, error), into *float64) error { return s.measure(&c, fn, into) }
	if strings.HasPrefix(v, "node-b") {
		var untimed float64
		if err := measure(func() (time.Duration, error) {
			return b.cirNodeDeploy(s, n, "b", plat, name+":b", fmt.Sprintf("9-%s-r%d-deploy-b", v, run))
		}, &untimed); err != nil {
			return c, err
		}
		c = cirCase{}
	}
	lock := filepath.Join(n.dir, "a.lock")
	if strings.HasSuffix(v, "-lock") {
		dt, err := os.ReadFile(s.lock)
		if err == nil {
			err = os.WriteFile(lock, dt, 0o644)
		}
		if err != nil {
			return c, fmt.Errorf("the lock file of a: %w", err)
		}
	}
	if err := measure(func() (time.Duration, error) {
		return b.cirNodeDeploy(s, n, "a", plat, name+":a", cirDeployLog(v, run), cirNodeExtra(v, s.cache, lock)...)
	}, &c.deploy); err != nil {
		return c, err
	}
	if run == 0 {
		k := "node " + v + " " + plat
		out, _, err := b.cmd(fmt.Sprintf("9-%s-r%d-ctr-run", v, run), "ctr", "--address", n.ctrd, "--namespace", cirNodeNS, "run", "--rm", name+":a", fmt.Sprintf("cir-%s-%d", v, os.Getpid()))
		got := strings.TrimSpace(out)
		if err == nil && !strings.Contains(got, cirWantOutput) {
			err = fmt.Errorf("printed %q, want %q in it", got, cirWantOutput)
		}
		info.Checks[k] = got
		if err != nil {
			info.Checks[k] = "failed: " + firstLine(err.Error()+" "+got)
			b.res.Notes = append(b.res.Notes, fmt.Sprintf("Experiment 9: app a deployed into containerd (%s) did not run with ctr run: %s", v, firstLine(err.Error()+" "+got)))
		}
	}
	return c, nil
}

// cirNodeRows adds the node-side figures: per case, the deploy time
// against the same runs' fat pulls (speedup) and the bytes from the
// registry, each against the fat image at equal settings (keys
// cir/node/deploy-zstd/...) and at BuildKit's default (cir/node/deploy/...);
// and the bytes from the archive.
func (b *bench) cirNodeRows(cases map[string][]cirCase) {
	get := func(v string, f func(cirCase) float64) []float64 {
		var out []float64
		for _, c := range cases[v] {
			out = append(out, f(c))
		}
		return out
	}
	for _, s := range cirNodeSpecs {
		if len(cases[s.v]) == 0 {
			continue
		}
		for _, set := range cirFatSettings {
			fatV := s.fatV + set.variant
			if len(cases[fatV]) == 0 {
				continue
			}
			r := &Row{Exp: expCIR, Key: "cir/node/deploy" + set.suffix + "/" + s.key, Name: "node-side " + s.name + " (" + set.fat + "), time", Settings: set.settings, Unit: "s",
				Ours: get(s.v, func(c cirCase) float64 { return c.deploy }), Peer: s.peer + ", " + set.fat, PeerVals: get(fatV, cirCase.seconds), RatioKind: Speedup}
			if set.zstd {
				r.Detail = fmt.Sprintf("2dfs deploy into the node's containerd (containerd worker, unpack=true, no push, no pull); %s .debs fetched from the archive", fmtSpread(get(s.v, func(c cirCase) float64 { return float64(c.debs) }), ""))
			}
			if s.target > 0 {
				r.Target, r.TargetMin = "≥2×", s.target
			}
			b.add(r)
			b.add(&Row{Exp: expCIR, Key: "cir/node/registry" + set.suffix + "/" + s.key, Name: "node-side " + s.name + " (" + set.fat + "), bytes from the registry to the node", Settings: set.settings, Unit: "MB",
				Ours: get(s.v, func(c cirCase) float64 { return c.regMB }), Peer: s.peer + ", " + set.fat, PeerVals: get(fatV, func(c cirCase) float64 { return c.regMB }), RatioKind: Relative,
				Detail: "the node's buildkitd's base and cache reads and 2dfs's reads of the CIR, counted on the loopback forwarder"})
		}
		b.add(&Row{Exp: expCIR, Key: "cir/node/archive/" + s.key, Name: "node-side " + s.name + ", .deb bytes from the Debian archive", Unit: "MB",
			Ours: get(s.v, func(c cirCase) float64 { return c.archiveMB })})
	}
}

// cirNodeSpec is one node-side row: its variant, the fat case it is
// timed against, and its target.
type cirNodeSpec struct {
	key, v, fatV, name, peer string
	target                   float64
}

var cirNodeSpecs = []cirNodeSpec{
	{"a", "node-a", "fat-a", "(a) empty caches, fresh resolution", "fat pull, fresh node", 0},
	{"b", "node-b", "fat-b", "(b) b already deployed on the node, fresh resolution", "fat pull, node holds fat b", 2},
	{"c", "node-c", "fat-a", "(c) fresh node, --cache-from the registry dependency cache, fresh resolution", "fat pull, fresh node", 2},
	{"b-lock", "node-b-lock", "fat-b", "(b) b already deployed on the node, --lock", "fat pull, node holds fat b", 2},
	{"c-lock", "node-c-lock", "fat-a", "(c) fresh node, --cache-from the registry dependency cache, --lock", "fat pull, fresh node", 2},
}
