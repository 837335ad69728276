// Command 2dfs-bench measures 2DFS builds, re-builds, partition pulls and
// the registry proxy against their peers (BuildKit's Dockerfile frontend
// with COPY and COPY --link, direct registry pulls) on real daemons, and
// writes results.md, results.json and results.png.
//
// It is run by hack/bench, which builds our binaries, starts buildkitd, a
// registry and containerd with hack/daemons, and passes their addresses in
// the environment (BUILDKIT_HOST, TDFS_REGISTRY, CONTAINERD_ADDRESS,
// TDFS_TOOLS). See docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

type config struct {
	out      string
	bin      string // folder with 2dfs and 2dfs-proxy
	root     string // repository root (hack/base-image)
	work     string // scratch folder for contexts
	splits   int
	splitMiB int
	cols     int
	runs     int
	exps     map[int]bool
	seed     uint64
	requests int // proxy latency samples per figure
	conc     []int

	rebuildPcts []int // experiment 2: percentages of the splits changed
	pulls       int   // experiment 4: pulls per path
	maxPulls    int   // experiment 4: up to this many while the statistics disagree

	daemons string // hack/daemons folder, for more buildkitds

	linkShapes string // experiment 8: shapes of the link (link.go)
	linkMiB    int    // experiment 8: blob size
	linkBefore string // experiment 8: another 2dfs-proxy binary to compare with
	linkTLS    bool   // experiment 8: the registry serves HTTPS

	pinRegistry bool     // registry and builder on separate CPUs (pin.go)
	pinned      *pinning // set once pinned
	directOnly  bool     // experiment 1: the direct engine and its floors alone

	env                                   *testenv.Daemons
	tools, buildkit, registry, containerd string
}

type bench struct {
	config
	ctx     context.Context
	res     *Results
	baseN   int // base images made so far (base:b1, b2, ...)
	started time.Time

	coldCtx    *fieldContext
	singleCtxs []*fieldContext
	coldBase   string
	rbCtx      map[string]*fieldContext
	rbBase     string
	limits     map[string][]float64 // machine limits in MB/s (experiment 6)
	proxy      *proxyState
	ctrd       *testenv.Proc     // the benchmark's containerd (experiment 4)
	ctrdDir    string            // its folder
	builders   map[string]string // BUILDKIT_HOST per variant
	key        uint64            // last key of randomData used for fresh split bytes
	// lastRSS is the peak resident memory (KiB) of the last direct build
	// (the 2dfs process alone, not the daemons it talks to).
	lastRSS atomic.Int64
}

func main() {
	if len(os.Args) > 3 && os.Args[1] == rssWrapArg {
		os.Exit(rssWrap(os.Args[2], os.Args[3:]))
	}
	if os.Getenv(linkClientEnv) != "" {
		linkClientMain()
		return
	}
	if target := os.Getenv(forwardEnv); target != "" {
		forwardMain(target)
		return
	}
	var c config
	var exps, conc, pcts, render, update string
	var cirOnly bool
	flag.StringVar(&c.out, "out", "bench-out", "output folder for results.md, results.json, results.png and logs")
	flag.StringVar(&c.bin, "bin", "", "folder holding the 2dfs and 2dfs-proxy binaries")
	flag.StringVar(&c.root, "root", ".", "repository root")
	flag.StringVar(&c.daemons, "daemons", "", "folder of hack/daemons up, where more buildkitds are started")
	flag.StringVar(&c.work, "work", "", "scratch folder for build contexts (default: a temporary folder)")
	flag.IntVar(&c.splits, "splits", 8, "number of synthetic model splits (allotments)")
	flag.IntVar(&c.splitMiB, "split-mib", 24, "size of each split in MiB")
	flag.IntVar(&c.cols, "cols", 4, "columns of the field: split i is at row i/cols, col i%cols")
	flag.IntVar(&c.runs, "runs", 3, "runs per figure (medians with min and max)")
	flag.StringVar(&exps, "experiments", "1,2,3,4,5,6,7", "experiments to run (comma separated)")
	flag.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "seed of the random split data")
	flag.IntVar(&c.requests, "requests", 200, "requests per proxy latency figure")
	flag.StringVar(&conc, "concurrency", "1,8,32", "client concurrency levels of the proxy throughput figures")
	flag.StringVar(&pcts, "rebuild-pcts", "25", "experiment 2: percentages of the splits changed, from the top and from the bottom (all N always); 25,50,75 is the full set")
	flag.IntVar(&c.pulls, "pulls", 15, "experiment 4: pulls per path")
	flag.IntVar(&c.maxPulls, "max-pulls", 30, "experiment 4: keep pulling, 5 at a time, up to this many while the two ratio statistics disagree on the target")
	flag.StringVar(&c.linkShapes, "link-shapes", "veth,10gbit,1gbit", "experiment 8: shapes of the link between client and registry: veth (unshaped), a rate (tbf: 10gbit, 1gbit, 500mbit), either with @DELAY (netem, each way: 1gbit@250us)")
	flag.IntVar(&c.linkMiB, "link-mib", 32, "experiment 8: MiB of the blob pulled over the link")
	flag.StringVar(&c.linkBefore, "link-before", "", "experiment 8: another 2dfs-proxy binary (say, built before a change) run beside ours on both sides, interleaved")
	flag.BoolVar(&c.linkTLS, "link-tls", false, "experiment 8: the registry serves HTTPS (self-signed), and the proxy with HTTP/2 to it (the default) is compared with HTTP/1.1")
	flag.BoolVar(&c.pinRegistry, "pin-registry", false, "pin the registry to half of the CPUs and the building side (this process and what it starts, buildkitd, containerd) to the other half, as if the registry ran on a host of its own (see docs/benchmarks.md)")
	flag.BoolVar(&c.directOnly, "direct-only", false, "experiment 1: build only with the direct engine (cold, no-op, both registry floors), no BuildKit variants")
	flag.BoolVar(&cirOnly, "cir", false, "run experiment 9 alone: a CIR against fat Dockerfile images of a numpy+pandas+scikit-learn app, in size and deploy time (same as -experiments 9; needs the Debian archive; 32 min on the loaded 2-core machine: the emulated arm64 fat build beside the amd64 setup, then 10 deploy cases per run, half of them on a fresh containerd-worker node)")
	flag.StringVar(&render, "render", "", "render RESULTS.json into results.md and into the generated sections of the files named by -update, then exit (no daemons)")
	flag.StringVar(&update, "update", "", "with -render: comma-separated markdown files whose <!-- bench:NAME --> sections to regenerate (docs/benchmarks.md,README.md)")
	flag.Parse()
	if render != "" {
		if err := renderFile(render, update); err != nil {
			fatalf("%v", err)
		}
		return
	}

	if cirOnly {
		exps = strconv.Itoa(expCIR)
	}
	var err error
	if c.exps, err = parseExperiments(exps); err != nil {
		fatalf("-experiments: %v", err)
	}
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("-concurrency: %q", s)
		}
		c.conc = append(c.conc, n)
	}
	for _, s := range strings.Split(pcts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 99 {
			fatalf("-rebuild-pcts: %q is not 1..99", s)
		}
		c.rebuildPcts = append(c.rebuildPcts, n)
	}
	if c.pulls < 1 || c.maxPulls < c.pulls {
		fatalf("-pulls must be positive and -max-pulls at least -pulls")
	}
	if _, err := parseShapes(c.linkShapes); err != nil {
		fatalf("%v", err)
	}
	if c.linkBefore != "" {
		if _, err := os.Stat(c.linkBefore); err != nil || !filepath.IsAbs(c.linkBefore) {
			fatalf("-link-before: %q must be the absolute path of a 2dfs-proxy binary (%v)", c.linkBefore, err)
		}
	}
	if c.linkMiB < 1 {
		fatalf("-link-mib must be positive")
	}
	if c.splits < 1 || c.splitMiB < 1 || c.runs < 1 || c.cols < 1 {
		fatalf("-splits, -split-mib, -runs and -cols must be positive")
	}
	env, err := testenv.FromEnviron(c.root, c.daemons)
	if err != nil || c.bin == "" {
		fatalf("run through hack/bench (needs TDFS_TOOLS, BUILDKIT_HOST, TDFS_REGISTRY, CONTAINERD_ADDRESS, -bin and -daemons)")
	}
	c.env, c.tools, c.buildkit, c.registry, c.containerd = env, env.Tools, env.BuildkitHost, env.Registry, env.Containerd
	if err := os.MkdirAll(filepath.Join(c.out, "logs"), 0o755); err != nil {
		fatalf("%v", err)
	}
	if c.work == "" {
		d, err := os.MkdirTemp("", "tdfs-bench-")
		if err != nil {
			fatalf("%v", err)
		}
		defer os.RemoveAll(d)
		c.work = d
	}

	// The direct engine's stat cache: the benchmark's own, so no earlier
	// run's entries make a cold build warm.
	if err := os.Setenv("XDG_CACHE_HOME", filepath.Join(c.work, "xdg-cache")); err != nil {
		fatalf("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{config: c, ctx: ctx, started: time.Now(), key: 1 << 32}
	b.res = &Results{
		Flags:    userFlags(),
		Started:  b.started.UTC().Format(time.RFC3339),
		Splits:   c.splits,
		SplitMiB: c.splitMiB,
		Cols:     c.cols,
		Runs:     c.runs,
		Seed:     c.seed,
		Machine:  machine(),
	}
	err = b.run()
	b.stopProxy()
	b.stopContainerd()
	b.res.Seconds = time.Since(b.started).Seconds()
	if werr := b.write(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("\n%s\nwrote %s/results.md, results.json, results.png in %.0fs\n", b.markdown(), c.out, b.res.Seconds)
}

// userFlags are the flags given on the command line other than the
// plumbing hack/bench passes (folders and binaries), as -name=value.
func userFlags() []string {
	var out []string
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "bin", "daemons", "root", "work", "out":
			return
		}
		out = append(out, "-"+f.Name+"="+f.Value.String())
	})
	return out
}

// parseExperiments reads -experiments: numbers 1..9, comma separated.
// Experiments 8 (pass-through over a link) and 9 (the CIR benchmark) run
// only when named: they are not in the default list.
func parseExperiments(list string) (map[int]bool, error) {
	exps := map[int]bool{}
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > expCIR {
			return nil, fmt.Errorf("%q is not 1..%d", s, expCIR)
		}
		exps[n] = true
	}
	return exps, nil
}

func (b *bench) run() error {
	// The variants' buildkitds serve experiments 1-7; experiments 8 and 9
	// start what they need.
	if b.exps[1] || b.exps[2] || b.exps[3] || b.exps[4] || b.exps[5] || b.exps[6] || b.exps[7] {
		if err := b.startBuilders(); err != nil {
			return err
		}
	}
	if b.pinRegistry {
		cpus, err := allowedCPUs()
		if err != nil {
			return err
		}
		p, err := splitCPUs(cpus)
		if err != nil {
			return err
		}
		if err := pinDaemons(b.daemons, p); err != nil {
			return err
		}
		b.pinned = &p
		b.logf("pinned: %s", p)
	}
	steps := []struct {
		n  int
		fn func() error
	}{
		{6, b.machineLimits}, // first: measured on an idle machine
		{1, b.coldBuild},
		{2, b.rebuild},
		{3, b.baseChange},
		{6, b.compression},
		{7, b.remoteSources},
		{4, b.partitionPull},
		{5, b.proxyLatency},
		{8, b.linkPassThrough},
		{expCIR, b.cirBench},
	}
	for _, s := range steps {
		if !b.exps[s.n] {
			continue
		}
		if err := b.ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		if err := s.fn(); err != nil {
			return fmt.Errorf("experiment %d: %w", s.n, err)
		}
		b.res.StepSeconds = append(b.res.StepSeconds, StepTime{Exp: s.n, Seconds: time.Since(start).Seconds()})
	}
	return nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%5.0fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "2dfs-bench: "+format+"\n", args...)
	os.Exit(1)
}

func machine() string {
	cpu := ""
	if dt, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(dt), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if dt, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(dt), "\n", 2)[0])
		if len(f) >= 2 {
			if kb, err := strconv.Atoi(f[1]); err == nil {
				mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	// The load average says how busy the machine was when the run began:
	// figures from a shared machine are noisier and slower.
	load := ""
	if dt, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(dt)); len(f) >= 3 {
			load = ", load average " + strings.Join(f[:3], " ") + " at the start"
		}
	}
	return fmt.Sprintf("%d cores (%s)%s, %s/%s%s", runtime.NumCPU(), cpu, mem, runtime.GOOS, runtime.GOARCH, load)
}

// runOrder rotates the variants per run so no variant always goes first.
func runOrder[T any](vs []T, run int) []T {
	out := slices.Clone(vs)
	if len(out) > 0 {
		k := run % len(out)
		out = append(out[k:], out[:k]...)
	}
	return out
}
