package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// refName is a fresh repository name, so every cold push is a real upload.
func (b *bench) refName(kind string, run int) string {
	return fmt.Sprintf("%s/bench/%s-%x-r%d:v1", b.registry, kind, b.seed&0xffffff, run)
}

func (b *bench) totalBytes() float64 { return float64(b.splits) * float64(b.splitMiB) * (1 << 20) }

// coldContext writes (once) the context the cold builds use, and one
// context per split for the single-split images.
func (b *bench) coldContext() (*fieldContext, []*fieldContext, string, error) {
	dir := filepath.Join(b.work, "cold")
	if b.coldCtx != nil {
		return b.coldCtx, b.singleCtxs, b.coldBase, nil
	}
	base, err := b.newBase()
	if err != nil {
		return nil, nil, "", err
	}
	fc, err := newFieldContext(dir, b.splits, b.cols, base)
	if err != nil {
		return nil, nil, "", err
	}
	var singles []*fieldContext
	for i := range b.splits {
		s, err := newFieldContext(filepath.Join(b.work, fmt.Sprintf("single-%d", i)), 1, 1, base)
		if err != nil {
			return nil, nil, "", err
		}
		data := randomData(b.seed, uint64(i), b.splitMiB<<20)
		if err := writeSplit([]*fieldContext{fc}, i, data); err != nil {
			return nil, nil, "", err
		}
		if err := writeSplit([]*fieldContext{s}, 0, data); err != nil {
			return nil, nil, "", err
		}
		singles = append(singles, s)
	}
	b.coldCtx, b.singleCtxs, b.coldBase = fc, singles, base
	return fc, singles, base, nil
}

// refreshCold writes new random bytes into every split of the cold
// contexts (the field and the single-split ones get the same bytes). Every
// cold build starts with it: with the same bytes, a build after
// `buildctl prune --all` still found its compressed layers (export and push
// of 128 MB in 0.3 s each), from blobs BuildKit's content store kept and
// from the registry, where containerd's pusher mounts blobs across
// repositories, so fresh repository names alone do not make a push real.
func (b *bench) refreshCold() error {
	for i := range b.splits {
		b.key++
		data := randomData(b.seed, b.key, b.splitMiB<<20)
		if err := writeSplit([]*fieldContext{b.coldCtx}, i, data); err != nil {
			return err
		}
		if err := writeSplit([]*fieldContext{b.singleCtxs[i]}, 0, data); err != nil {
			return err
		}
	}
	return nil
}

// Kinds of cold build besides the build variants.
const (
	kTDFSGzip     = "2dfs gzip"
	kSingles      = "single images"
	kSinglesZstd1 = "single images zstd -1"
)

// Experiment 1: cold builds (empty cache, fresh data and repositories).
func (b *bench) coldBuild() error {
	fc, singles, base, err := b.coldContext()
	if err != nil {
		return err
	}
	// "2dfs" is the CLI's default compression (zstd, level 1); the peers
	// run at BuildKit's default (gzip) and at ours, and "2dfs gzip" is ours
	// at theirs.
	kinds := append(slices.Clone(buildVariants), kTDFSGzip, kSingles, kSinglesZstd1)
	if b.directOnly {
		kinds = []string{vDirect}
	}
	times := map[string][]float64{}
	phases := map[string][]Phases{}
	noop := map[string][]float64{}
	floors := map[string][]float64{}
	var reads []string
	var rss []float64 // MB, the direct engine's 2dfs process
	for run := range b.runs {
		for _, k := range runOrder(kinds, run) {
			if err := b.refreshCold(); err != nil {
				return err
			}
			builder := k
			switch k {
			case kTDFSGzip:
				builder = vTDFS
			case kSingles:
				builder = vCopy
			case kSinglesZstd1:
				builder = vCopyZ
			}
			// The direct engine has no build cache; its stat cache
			// misses on the new bytes refreshCold wrote.
			if builder != vDirect {
				if err := b.prune(builder); err != nil {
					return err
				}
			}
			slug := slugOf(k)
			log := fmt.Sprintf("1-cold-%s-r%d", slug, run)
			var d time.Duration
			switch k {
			case kSingles, kSinglesZstd1:
				// K images, one split each, built one after the other
				// with a Dockerfile (the 2DFS paper's comparison).
				for i, s := range singles {
					di, _, err := b.build(builder, s.dir, b.refName(fmt.Sprintf("%s%d", slug, i), run), base, fmt.Sprintf("%s-%d", log, i))
					if err != nil {
						return err
					}
					d += di
				}
			default:
				var extra []string
				if k == kTDFSGzip {
					extra = []string{"compression=gzip"}
				}
				var p Phases
				d, p, err = b.build(builder, fc.dir, b.refName(slug, run), base, log, extra...)
				if err != nil {
					return err
				}
				phases[k] = append(phases[k], p)
				if k == vDirect {
					rss = append(rss, float64(b.lastRSS.Load())*1024/1e6)
				}
				if k == vTDFS || k == vDirect {
					// No-op: the same build again, nothing changed.
					nd, _, err := b.build(builder, fc.dir, b.refName(slug, run), base, log+"-noop")
					if err != nil {
						return err
					}
					noop[k] = append(noop[k], nd.Seconds())
				}
				if k == vDirect {
					if err := b.directCold(b.refName(slug, run), base, run, log, floors, &reads); err != nil {
						return err
					}
				}
			}
			times[k] = append(times[k], d.Seconds())
			b.logf("exp 1 run %d: %s %.1fs", run+1, k, d.Seconds())
		}
	}
	detail := func(ks ...string) string {
		var parts []string
		for _, k := range ks {
			parts = append(parts, k+": "+phaseText(phases[k]))
		}
		return strings.Join(parts, "; ")
	}
	singlesName := fmt.Sprintf("cold build, 2dfs vs %d single-split images (COPY)", b.splits)
	rows := []*Row{
		{Key: "cold/copy", Name: "cold build, 2dfs vs COPY", Settings: Equal, Ours: times[vTDFS], Peer: vCopyZ, PeerVals: times[vCopyZ], Detail: detail(vTDFS, vCopyZ)},
		{Key: "cold/link", Name: "cold build, 2dfs vs COPY --link", Settings: Equal, Ours: times[vTDFS], Peer: vLinkZ, PeerVals: times[vLinkZ], Detail: detail(vLinkZ),
			Target: "≥2×", TargetMin: 2},
		{Key: "cold/singles", Name: singlesName, Settings: Equal, Ours: times[vTDFS], Peer: kSinglesZstd1, PeerVals: times[kSinglesZstd1]},
		{Key: "cold/link-gzip", Name: "cold build, 2dfs vs COPY --link", Settings: EqualGzip, Ours: times[kTDFSGzip], Peer: vLink, PeerVals: times[vLink], Detail: detail(kTDFSGzip, vLink)},
		{Key: "cold/copy-defaults", Name: "cold build, 2dfs vs COPY", Settings: Defaults, Ours: times[vTDFS], Peer: vCopy, PeerVals: times[vCopy], Detail: detail(vCopy)},
		{Key: "cold/link-defaults", Name: "cold build, 2dfs vs COPY --link", Settings: Defaults, Ours: times[vTDFS], Peer: vLink, PeerVals: times[vLink],
			Target: "≥2×", TargetMin: 2},
		{Key: "cold/singles-defaults", Name: singlesName, Settings: Defaults, Ours: times[vTDFS], Peer: kSingles, PeerVals: times[kSingles]},
	}
	for _, r := range rows {
		if b.directOnly {
			break
		}
		r.Exp, r.Unit, r.RatioKind = 1, "s", Speedup
		b.add(r)
	}
	b.directColdRows(times, noop, floors, reads, rss)
	return nil
}

// rebuildContexts are one context per variant, with the same files, each
// built once (untimed) so the re-builds start from a warm cache.
func (b *bench) rebuildContexts() (map[string]*fieldContext, string, error) {
	if b.rbCtx != nil {
		return b.rbCtx, b.rbBase, nil
	}
	base, err := b.newBase()
	if err != nil {
		return nil, "", err
	}
	ctxs := map[string]*fieldContext{}
	var all []*fieldContext
	for _, v := range buildVariants {
		fc, err := newFieldContext(filepath.Join(b.work, "rebuild-"+strings.NewReplacer(" ", "", "-", "").Replace(v)), b.splits, b.cols, base)
		if err != nil {
			return nil, "", err
		}
		ctxs[v] = fc
		all = append(all, fc)
	}
	for i := range b.splits {
		if err := writeSplit(all, i, randomData(b.seed, 1000+uint64(i), b.splitMiB<<20)); err != nil {
			return nil, "", err
		}
	}
	for _, v := range buildVariants {
		if _, _, err := b.build(v, ctxs[v].dir, b.rebuildRef(v), base, "2-prime-"+slugOf(v)); err != nil {
			return nil, "", err
		}
	}
	b.rbCtx, b.rbBase = ctxs, base
	return ctxs, base, nil
}

func slugOf(v string) string {
	return strings.NewReplacer(" ", "", "-", "").Replace(strings.ToLower(v))
}

func (b *bench) rebuildRef(v string) string {
	return fmt.Sprintf("%s/bench/rebuild-%s-%x:latest", b.registry, slugOf(v), b.seed&0xffffff)
}

// rebuiltAllotments counts the allotment vertices BuildKit did not take
// from its cache. It checks first that the progress shows every one of the
// field's allotments: a progress format the parser no longer reads would
// otherwise count as "nothing re-built".
func rebuiltAllotments(progress string, want int) (int, error) {
	cells := testenv.AllotmentVertices(progress)
	if len(cells) != want {
		return 0, fmt.Errorf("the progress shows %d allotment vertices, want %d (has BuildKit's plain progress format changed?)", len(cells), want)
	}
	n := 0
	for _, cached := range cells {
		if !cached {
			n++
		}
	}
	return n, nil
}

// Experiment 2: re-builds after changing k of N splits, from the top (the
// first splits) and from the bottom (the last), for each percentage of
// -rebuild-pcts, and all N.
func (b *bench) rebuild() error {
	ctxs, base, err := b.rebuildContexts()
	if err != nil {
		return err
	}
	var all []*fieldContext
	for _, v := range buildVariants {
		all = append(all, ctxs[v])
	}
	type cond struct {
		pct int
		dir string
	}
	var conds []cond
	for _, dir := range []string{"bottom", "top"} {
		for _, pct := range b.rebuildPcts {
			conds = append(conds, cond{pct, dir})
		}
	}
	conds = append(conds, cond{100, "all"})
	medians := map[int]float64{}
	exact := true
	var counts []string
	for _, c := range conds {
		k := max(1, int(math.Round(float64(c.pct)*float64(b.splits)/100)))
		var idx []int
		for i := range k {
			if c.dir == "bottom" {
				idx = append(idx, b.splits-k+i)
			} else {
				idx = append(idx, i)
			}
		}
		times := map[string][]float64{}
		var phases []Phases
		rebuilt := []int{}
		for run := range b.runs {
			for _, i := range idx {
				b.key++
				if err := writeSplit(all, i, randomData(b.seed, b.key, b.splitMiB<<20)); err != nil {
					return err
				}
			}
			if err := b.rebuildEach(ctxs, base, run, fmt.Sprintf("2-rebuild-%d-%s", c.pct, c.dir), times, &phases, &rebuilt); err != nil {
				return err
			}
		}
		for _, n := range rebuilt {
			exact = exact && n == k
		}
		counts = append(counts, fmt.Sprintf("%d of %d %s: %v", k, b.splits, c.dir, rebuilt))
		if c.dir != "top" {
			medians[k] = median(times[vTDFS])
		}
		name := fmt.Sprintf("re-build, %d%% changed (%d of %d, %s)", c.pct, k, b.splits, c.dir)
		key := fmt.Sprintf("rebuild/%d-%s", c.pct, c.dir)
		detail := fmt.Sprintf("2dfs re-built allotments per run %v; %s", rebuilt, phaseText(phases))
		b.addPeers(2, key, name, times, detail, func(r *Row) {
			if c.dir != "bottom" {
				return
			}
			if r.Peer == vCopy || r.Peer == vCopyZ {
				r.Target, r.TargetMin = "≥3×", 3
			} else {
				r.Target, r.TargetMin = "≥1× (no slower)", 1
			}
		})
		b.addDirectPeers(2, key, name, times)
	}
	b.add(&Row{Exp: 2, Key: "rebuild/exact", Name: "re-build, 2dfs re-built exactly the changed allotments", Target: "every run", Met: &exact,
		Detail: "allotments re-built per run: " + strings.Join(counts, "; ")})
	b.res.Notes = append(b.res.Notes,
		"Experiment 2 takes \"top\" as the first splits (the first COPY lines, nearest the base) and \"bottom\" as the last. A plain COPY build re-builds every layer after the first changed one, so changing the last k splits costs it as little as it costs 2dfs; changing the first k makes it re-build all N.")
	// Proportionality: the time of changing the last k splits against k/N
	// of the time of changing all of them.
	if full, ok := medians[b.splits]; ok && full > 0 {
		var ks []string
		for _, c := range b.rebuildPcts {
			k := max(1, int(math.Round(float64(c)*float64(b.splits)/100)))
			if m, ok := medians[k]; ok && k != b.splits {
				ks = append(ks, fmt.Sprintf("k=%d: %.2f", k, m/(full*float64(k)/float64(b.splits))))
			}
		}
		if len(ks) > 0 {
			b.res.Notes = append(b.res.Notes, fmt.Sprintf("Re-build proportionality (2dfs time for the last k splits changed ÷ (k/N × time for all N), 1.00 = proportional to changed bytes; the fixed cost of a build (descriptor, context scan, base resolve, manifest push) pushes small k above 1): %s.", strings.Join(ks, ", ")))
		}
	}
	return nil
}

// addPeers adds the rows of one re-build figure: 2dfs against COPY and
// COPY --link, at equal settings first, then at the tools' defaults. set
// adjusts each row (targets).
func (b *bench) addPeers(exp int, key, name string, times map[string][]float64, detail string, set func(*Row)) {
	for _, p := range []struct{ peer, label, settings, key string }{
		{vCopyZ, "COPY", Equal, "copy"},
		{vLinkZ, "COPY --link", Equal, "link"},
		{vCopy, "COPY", Defaults, "copy-defaults"},
		{vLink, "COPY --link", Defaults, "link-defaults"},
	} {
		r := &Row{Exp: exp, Key: key + "/" + p.key, Name: name + ", 2dfs vs " + p.label, Settings: p.settings, Unit: "s",
			Ours: times[vTDFS], Peer: p.peer, PeerVals: times[p.peer], RatioKind: Speedup}
		if p.key == "copy" {
			r.Detail = detail
		}
		if set != nil {
			set(r)
		}
		b.add(r)
	}
}

// rebuildEach builds every variant once from its warm context (the order
// rotates with run), recording times, and for 2dfs its phases and how many
// allotments BuildKit re-ran.
func (b *bench) rebuildEach(ctxs map[string]*fieldContext, base string, run int, logPrefix string, times map[string][]float64, phases *[]Phases, rebuilt *[]int) error {
	for _, v := range runOrder(buildVariants, run) {
		log := fmt.Sprintf("%s-%s-r%d", logPrefix, slugOf(v), run)
		d, p, err := b.build(v, ctxs[v].dir, b.rebuildRef(v), base, log)
		if err != nil {
			return err
		}
		times[v] = append(times[v], d.Seconds())
		if v == vTDFS {
			*phases = append(*phases, p)
			path := filepath.Join(b.out, "logs", log+".log")
			dt, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n, err := rebuiltAllotments(string(dt), b.splits)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			*rebuilt = append(*rebuilt, n)
		}
	}
	return nil
}

// Experiment 3: a new base image under unchanged splits.
func (b *bench) baseChange() error {
	ctxs, _, err := b.rebuildContexts()
	if err != nil {
		return err
	}
	times := map[string][]float64{}
	var rebuilt []int
	var phases []Phases
	for run := range b.runs {
		base, err := b.newBase()
		if err != nil {
			return err
		}
		if err := b.rebuildEach(ctxs, base, run, "3-base", times, &phases, &rebuilt); err != nil {
			return err
		}
	}
	allZero := true
	var rb []float64
	for _, n := range rebuilt {
		allZero = allZero && n == 0
		rb = append(rb, float64(n))
	}
	b.addPeers(3, "base", "base change", times, phaseText(phases), func(r *Row) {
		if r.Peer == vCopy || r.Peer == vCopyZ {
			r.Target, r.TargetMin = "≥50×", 50
		}
	})
	b.addDirectPeers(3, "base", "base change", times)
	b.add(&Row{Exp: 3, Key: "base/rebuilt", Name: "base change, allotments re-built by 2dfs", Unit: "", Ours: rb, Target: "0", Met: &allZero})
	return nil
}
