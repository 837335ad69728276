package main

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file renders experiment 9 (hack/bench -cir) into its own sections:
// docs/benchmarks.md's <!-- bench:cir --> and the README's
// <!-- bench:cir-readme -->, from the rows and CIRInfo of one results.json.

// onlyCIR says whether the run measured experiment 9 alone.
func (b *bench) onlyCIR() bool {
	if b.res.CIR == nil {
		return false
	}
	for _, r := range b.res.Rows {
		if r.Exp != expCIR {
			return false
		}
	}
	return true
}

// fmtPct is a ratio as a percentage with two significant digits:
// 0.0000065 -> "0.00065 %".
func fmtPct(v float64) string {
	return strconv.FormatFloat(v*100, 'g', 2, 64) + " %"
}

// pctOf is a size row's ratio as a percentage with its verdict.
func pctOf(r *Row) string {
	if r == nil || len(r.Ratios) == 0 {
		return "–"
	}
	s := fmtPct(r.RatioOfMedians)
	if v := r.verdict(); v != "" {
		s += " (" + v + ")"
	}
	return s
}

// mbOf is a one-value row's figure on our side or the peer's.
func mbOf(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	return fmtStat(v, "MB")
}

var cirCaseNames = map[string]string{"a": "(a) empty caches", "b": "(b) b already deployed on the node", "c": "(c) fresh node, --cache-from the registry dependency cache"}

// cirMarkdown is experiment 9's section of docs/benchmarks.md.
func (b *bench) cirMarkdown() string {
	r, info := b.res, b.res.CIR
	if info == nil {
		return ""
	}
	var s strings.Builder
	flags := "`hack/bench " + strings.ReplaceAll(strings.Join(append([]string{"-cir"}, slices.DeleteFunc(slices.Clone(r.Flags), func(f string) bool { return f == "-cir=true" })...), " "), "=true", "") + "`"
	fmt.Fprintf(&s, "Run of %s (%s), %d runs per deploy figure; %s; took %.0f s.\n\n", r.Started, flags, r.Runs, r.Machine, r.Seconds)
	node := cirPlatforms[0]
	fmt.Fprintf(&s, "Application a is one Python file that fits a scikit-learn model on a pandas frame, with `\"apt\": [%s]` on the python3 base of `hack/debian-base` "+
		"(bookworm minbase + python3 + pip: %s MB on linux/amd64, %s MB on linux/arm64). Deploy resolved %d packages for linux/amd64 and %d for linux/arm64 on that base. "+
		"Application b (`[%s]`, %d packages) is the one already deployed in case (b); it has %d of a's %d linux/amd64 packages.\n\n",
		quoteList(info.Apps["a"]), fmtNum(info.BaseMB["linux/amd64"]), fmtNum(info.BaseMB["linux/arm64"]), info.Closure["a/linux/amd64"], info.Closure["a/linux/arm64"],
		quoteList(info.Apps["b"]), info.Closure["b/"+node], info.Shared, info.Closure["a/"+node])

	s.WriteString("**Size** (bytes a registry stores: manifest, config, compressed layers; target: the CIR at most 5 % of one fat image; the fat image at equal settings, zstd -1 like the CIR's layers, first, then at BuildKit's default, gzip):\n\n")
	s.WriteString("| platform | fat image | CIR | fat image | CIR ÷ fat | fat minus base | CIR ÷ (fat minus base) | assembled by deploy |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, p := range append(slices.Clone(cirPlatforms), "sum") {
		for _, set := range cirFatSettings {
			size, added := b.row("cir/size"+set.suffix+"/"+p), b.row("cir/added"+set.suffix+"/"+p)
			if size == nil {
				continue
			}
			name, asmText := p, "–"
			if p == "sum" {
				name = strings.Join(cirPlatforms, " + ")
			}
			layers := info.FatLayers[p]
			if set.zstd {
				layers = info.FatZstdLayers[p]
			}
			if asm := b.row("cir/assembled/" + p); asm != nil {
				asmText = fmt.Sprintf("%s, %d layers (fat: %d)", mbOf(asm.Ours), info.AssembledLayers[p], layers)
			}
			addedMB := "–"
			if added != nil {
				addedMB = mbOf(added.PeerVals)
			}
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, set.label, fmtBytes(size.Ours), mbOf(size.PeerVals), pctOf(size), addedMB, pctOf(added), asmText)
		}
	}
	s.WriteString("\nThe CIR is one manifest for every platform and holds no base layer; a fat image holds its base, so *fat minus base* (the layers the Dockerfile adds) is the fairer comparison for a node that already has the base. " +
		"The assembled image is what `2dfs deploy` makes from the CIR: the base, one layer per package, an alternatives layer and the application.\n\n")

	fmt.Fprintf(&s, "**Deploy through the registry** on a %s node whose buildkitd is not its runtime's (a fresh buildkitd with an empty cache and a fresh containerd content store per case; the time until the node's containerd holds the application: `2dfs deploy --push` then `ctr images pull`, against `ctr images pull` of the pre-built fat image; cases interleaved and rotated per run):\n\n", node)
	var keys []deployTableRow
	for _, k := range []string{"a", "b", "c"} {
		keys = append(keys, deployTableRow{cirCaseNames[k], "cir/deploy", "cir/registry", "cir/archive/" + k, k})
	}
	s.WriteString(b.deployTable("CIR deploy + pull", keys))
	s.WriteString("\nCases: (a) empty caches; (b) application b deployed and pulled on the same node first (same buildkitd cache, containerd holding its layers), against the fat image of a pulled onto a node holding the fat image of b; " +
		"(c) a fresh buildkitd deploying with `--cache-from type=registry` of the dependency cache an earlier deploy of a filled with `--cache-to ...,mode=max`, against the fat pull on a fresh node.\n\n")
	s.WriteString(b.cirNodeMarkdown())

	s.WriteString("Details:\n\n")
	for _, row := range b.sortedRows() {
		if row.Exp == expCIR && row.Detail != "" && slices.ContainsFunc([]string{"cir/deploy", "cir/node/deploy", "cir/size"}, func(p string) bool {
			return strings.HasPrefix(row.Key, p+"/") || strings.HasPrefix(row.Key, p+"-zstd/")
		}) {
			fmt.Fprintf(&s, "- %s: %s\n", row.Name, row.Detail)
		}
	}
	if r := b.row("cir/archive/a"); r != nil {
		s.WriteString("- Archive bytes: " + r.Detail + ".\n")
	}
	var builds []string
	for _, k := range sortedKeys(info.FatBuildSeconds) {
		builds = append(builds, fmt.Sprintf("%s %.0f s", k, info.FatBuildSeconds[k]))
	}
	var zbuilds []string
	for _, k := range sortedKeys(info.FatZstdBuildSeconds) {
		zbuilds = append(zbuilds, fmt.Sprintf("%s %.0f s", k, info.FatZstdBuildSeconds[k]))
	}
	fmt.Fprintf(&s, "- Fat image builds (buildctl, dockerfile.v0, one platform each; linux/arm64's RUN under qemu-user-static): %s. Their apt-get install fetched %s MB (amd64) and %s MB (arm64) of .debs.\n",
		strings.Join(builds, ", "), fmtNum(info.FatDebsMB["linux/amd64"]), fmtNum(info.FatDebsMB["linux/arm64"]))
	if len(zbuilds) > 0 {
		fmt.Fprintf(&s, "- The same fat images at equal settings (`compression=zstd,compression-level=1,force-compression=true`), built right after on the same buildkitd, every step cached (the same layer contents): %s.\n", strings.Join(zbuilds, ", "))
	}
	s.WriteString(b.cirPhasesMarkdown())
	var deploys []string
	for _, k := range sortedKeys(info.DeploySeconds) {
		deploys = append(deploys, fmt.Sprintf("%s %.0f s", k, info.DeploySeconds[k]))
	}
	fmt.Fprintf(&s, "- One-off deploys of a, each on a fresh buildkitd (linux/amd64 with `--cache-to` filling the dependency cache; linux/arm64 on the amd64 host, no emulation): %s.\n", strings.Join(deploys, ", "))
	var checks []string
	for _, k := range sortedKeys(info.Checks) {
		checks = append(checks, fmt.Sprintf("%s: `%s`", k, info.Checks[k]))
	}
	fmt.Fprintf(&s, "- Application a run in each image (registry images: a Dockerfile RUN step, arm64 under qemu; node images: `ctr run` in the node's containerd, first run): %s.\n", strings.Join(checks, "; "))
	for _, n := range r.Notes {
		fmt.Fprintf(&s, "- %s\n", n)
	}
	if said := b.cirSummary(); said != "" {
		s.WriteString("\nWhat this run says (generated from the rows above):\n\n" + said)
	}
	return s.String()
}

// cirSummary is the run's findings as sentences, every number from a row:
// each against the fat image at equal settings, then at the default.
func (b *bench) cirSummary() string {
	var s strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&s, "- "+format+"\n", args...) }
	verdict := func(r *Row) string { return strings.ReplaceAll(r.verdict(), "**", "") }
	for _, set := range cirFatSettings {
		if r := b.row("cir/size" + set.suffix + "/" + cirPlatforms[0]); r != nil {
			say("**Size** against the fat images at %s: the CIR is %s of the linux/amd64 fat image and %s of what that image adds over its base; %s of both platforms' fat images together.",
				set.label, pctOf(r), pctOf(b.row("cir/added"+set.suffix+"/"+cirPlatforms[0])), pctOf(b.row("cir/size"+set.suffix+"/sum")))
		}
	}
	sentence := func(key func(suffix string) string) (string, []float64) {
		var parts []string
		var ours []float64
		for _, set := range cirFatSettings {
			r := b.row(key(set.suffix))
			if r == nil {
				continue
			}
			ours = r.Ours
			t := fmt.Sprintf("against %s for %s, speedup %s", fmtStat(r.PeerVals, "s"), set.phrase, ratioOf(r))
			if r.Target != "" {
				t += fmt.Sprintf(", target %s: %s", r.Target, verdict(r))
			}
			parts = append(parts, t)
		}
		return strings.Join(parts, "; "), ours
	}
	if t, ours := sentence(func(x string) string { return "cir/deploy" + x + "/a" }); ours != nil {
		bound := ""
		if arch := b.row("cir/archive/a"); arch != nil {
			bound = fmt.Sprintf(" %s MB of .debs came from deb.debian.org, and each package is unpacked in a container of its own; where the deploy's time went is in the details above.", fmtNum(median(arch.Ours)))
		}
		say("**(a) empty caches**: CIR deploy + pull takes %s %s.%s%s", fmtStat(ours, "s"), t, bound, b.boundBy("cir-a"))
	}
	for _, k := range []string{"b", "c"} {
		if t, ours := sentence(func(x string) string { return "cir/deploy" + x + "/" + k }); ours != nil {
			say("**(%s)** through the registry: %s %s.%s", k, fmtStat(ours, "s"), t, b.boundBy("cir-"+k))
		}
	}
	for _, n := range cirNodeSpecs {
		if t, ours := sentence(func(x string) string { return "cir/node/deploy" + x + "/" + n.key }); ours != nil {
			say("**Node-side %s**: %s %s.%s", n.name, fmtStat(ours, "s"), t, b.boundBy(n.v))
		}
	}
	return s.String()
}

// boundBy says, from the phases of the median run of variant v, which
// phases took most of its time: the largest ones (by their longest step,
// what each took at least) until they cover half the deploy, or "" when
// there is no breakdown.
func (b *bench) boundBy(v string) string {
	d, i := medianRun(b.res.CIR.Phases[v])
	if i < 0 || len(d.Phases) == 0 || d.Deploy <= 0 {
		return ""
	}
	ph := slices.Clone(d.Phases)
	slices.SortStableFunc(ph, func(x, y Phase) int { return cmp.Compare(y.Longest, x.Longest) })
	var parts []string
	var sum float64
	for _, p := range ph {
		if sum >= d.Deploy/2 || p.Longest < 0.05 {
			break
		}
		sum += p.Longest
		parts = append(parts, fmt.Sprintf("%s %.1f s", p.Name, p.Longest))
	}
	if len(parts) == 0 {
		return ""
	}
	s := fmt.Sprintf(" Its 2dfs deploy (%.1f s in the median run) spent most in %s", d.Deploy, strings.Join(parts, ", "))
	if d.Pull > 0 {
		s += fmt.Sprintf("; the pull after it took %.1f s", d.Pull)
	}
	return s + "."
}

// cirPhaseVariants are the CIR deploy variants whose phases the section
// gives, in the tables' order, with their names.
var cirPhaseVariants = []struct{ v, name string }{
	{"cir-a", "through the registry, " + cirCaseNames["a"]},
	{"cir-b", "through the registry, " + cirCaseNames["b"]},
	{"cir-c", "through the registry, " + cirCaseNames["c"]},
	{"node-a", "on the node, " + cirNodeSpecs[0].name},
	{"node-b", "on the node, " + cirNodeSpecs[1].name},
	{"node-c", "on the node, " + cirNodeSpecs[2].name},
	{"node-b-lock", "on the node, " + cirNodeSpecs[3].name},
	{"node-c-lock", "on the node, " + cirNodeSpecs[4].name},
}

// cirPhasesMarkdown is where each CIR deploy case's time went: the median
// run's phases, read from its plain progress log.
func (b *bench) cirPhasesMarkdown() string {
	info := b.res.CIR
	var s strings.Builder
	for _, pv := range cirPhaseVariants {
		runs := info.Phases[pv.v]
		d, i := medianRun(runs)
		if i < 0 || d.Phases == nil {
			continue
		}
		if s.Len() == 0 {
			s.WriteString("- Where each CIR deploy's time went (its median run, from the plain progress log under `logs/`; a phase of one step is its duration, " +
				"steps that run side by side are counted with their longest and their sum; what no step's time covers is the 2dfs process, reading the CIR, the frontend between its solves, and the overlap the sums hide):\n")
		}
		fmt.Fprintf(&s, "  - %s (run %d of %d): %s.\n", pv.name, i+1, len(runs), deployPhaseText(d))
	}
	return s.String()
}

// cirReadme is the README's short CIR table.
func (b *bench) cirReadme() string {
	if b.res.CIR == nil {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "Measured by `hack/bench -cir` (%s, %d runs, a machine shared with other jobs; [docs/benchmarks.md](docs/benchmarks.md#cir-against-fat-images)): "+
		"a numpy + pandas + scikit-learn app from Debian, the CIR against the image a Dockerfile `RUN apt-get install` makes, exported at equal settings (zstd -1, the CIR's) and at BuildKit's default (gzip).\n\n",
		b.res.Started[:min(10, len(b.res.Started))], b.res.Runs)
	fmt.Fprintf(&s, "| figure | CIR | fat image, %s | ratio | fat image, %s | ratio |\n| --- | --- | --- | --- | --- | --- |\n", cirFatSettings[0].label, cirFatSettings[1].label)
	// line is one figure against both fat images; size is a size figure
	// (bytes, percentages) rather than a time (seconds, speedups).
	line := func(name string, key func(suffix string) string, size bool) {
		ours, cells := "", []string{}
		for _, set := range cirFatSettings {
			r := b.row(key(set.suffix))
			if r == nil {
				cells = append(cells, "–", "–")
				continue
			}
			if size {
				ours = fmtBytes(r.Ours)
				cells = append(cells, mbOf(r.PeerVals), pctOf(r))
			} else {
				ours = fmtStat(r.Ours, "s")
				cells = append(cells, fmtStat(r.PeerVals, "s"), "speedup "+ratioOf(r))
			}
		}
		if ours != "" {
			fmt.Fprintf(&s, "| %s | %s | %s |\n", name, ours, strings.Join(cells, " | "))
		}
	}
	for _, p := range append(slices.Clone(cirPlatforms), "sum") {
		line("size, "+strings.ReplaceAll(p, "sum", "both platforms"), func(x string) string { return "cir/size" + x + "/" + p }, true)
	}
	line("size against fat minus base, "+cirPlatforms[0], func(x string) string { return "cir/added" + x + "/" + cirPlatforms[0] }, true)
	for _, k := range []string{"a", "b", "c"} {
		name := map[string]string{"a": "deploy, empty caches", "b": "deploy, app sharing its dependencies already on the node", "c": "deploy, fresh node with --cache-from a registry dependency cache"}[k]
		line(name+" (deploy --push + pull)", func(x string) string { return "cir/deploy" + x + "/" + k }, false)
	}
	for _, n := range cirNodeSpecs {
		line("deploy on the node's containerd-worker buildkitd, "+n.name, func(x string) string { return "cir/node/deploy" + x + "/" + n.key }, false)
	}
	return s.String()
}

// fmtSpread is fmtStat without a range when every run gave the same
// figure (bytes moved are the same each run).
func fmtSpread(v []float64, unit string) string {
	if len(v) > 0 && fmtNum(slices.Min(v)) == fmtNum(slices.Max(v)) {
		return fmtStat(v[:1], unit)
	}
	return fmtStat(v, unit)
}

// fmtBytes is a one-value MB figure small enough to read in bytes or kB.
func fmtBytes(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	switch m := median(v); {
	case m < 0.01:
		return fmt.Sprintf("%.0f B", m*1e6)
	case m < 1:
		return fmt.Sprintf("%.1f kB", m*1e3)
	default:
		return fmtNum(m) + " MB"
	}
}

func quoteList(v []string) string {
	var q []string
	for _, s := range v {
		q = append(q, strconv.Quote(s))
	}
	return strings.Join(q, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// cirNodeMarkdown is the node-side table of experiment 9's section.
func (b *bench) cirNodeMarkdown() string {
	var keys []deployTableRow
	for _, n := range cirNodeSpecs {
		keys = append(keys, deployTableRow{n.name, "cir/node/deploy", "cir/node/registry", "cir/node/archive/" + n.key, n.key})
	}
	table := b.deployTable("CIR deploy into containerd", keys)
	if table == "" {
		return ""
	}
	return "**Deploy on the node** (issue 12's node: its buildkitd uses the containerd worker of the node's containerd, so `2dfs deploy --output type=image,name=NAME,unpack=true` leaves the application in containerd's image store, unpacked: no push, no pull; " +
		"a fresh containerd (new root and state) and a fresh buildkitd on it per case; against the same runs' `ctr images pull` of the fat images as above; " +
		"*fresh resolution*: apt resolves the closure in every deploy (`apt-get update`); *--lock*: the deploy uses the lock file the cache-filling deploy of a wrote, as a CI pipeline would commit it, so nothing is resolved):\n\n" +
		table + "\nIn (b) the node deployed b first (fresh resolution in both variants), on the same buildkitd and containerd.\n\n"
}

// deployTableRow is one case of a deploy table: its name, the key
// prefixes of its time and registry rows (the settings' suffix and the
// case's key follow), and its archive row.
type deployTableRow struct {
	name, time, registry, archive, key string
}

// deployTable is a deploy table: per case the CIR's time, then the
// speedup against the fat image at equal settings with its target, then
// against the default with its target, the bytes from the registry of all
// three and from the archive. Cases without rows are left out; no case,
// no table.
func (b *bench) deployTable(ours string, cases []deployTableRow) string {
	var s strings.Builder
	for _, c := range cases {
		var cells, regText []string
		var ourTime []float64
		ourReg := "–"
		for _, set := range cirFatSettings {
			t, reg := b.row(c.time+set.suffix+"/"+c.key), b.row(c.registry+set.suffix+"/"+c.key)
			if t == nil {
				cells = append(cells, "–", "–", "", "")
			} else {
				ourTime = t.Ours
				cells = append(cells, fmtStat(t.PeerVals, "s"), ratioOf(t), t.Target, t.verdict())
			}
			if reg == nil {
				regText = append(regText, "–")
			} else {
				ourReg = fmtSpread(reg.Ours, "MB")
				regText = append(regText, fmtSpread(reg.PeerVals, "MB"))
			}
		}
		if ourTime == nil {
			continue
		}
		archText := "–"
		if arch := b.row(c.archive); arch != nil {
			archText = fmtSpread(arch.Ours, "MB")
		}
		if s.Len() == 0 {
			fmt.Fprintf(&s, "| case | %s | fat pull, %s | speedup (per run) | target | met | fat pull, %s | speedup (per run) | target | met | registry → node, CIR / fat %s / fat %s | .debs from the archive |\n",
				ours, cirFatSettings[0].label, cirFatSettings[1].label, cirFatSettings[0].fat, cirFatSettings[1].fat)
			s.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", c.name, fmtStat(ourTime, "s"), strings.Join(cells, " | "), ourReg+" / "+strings.Join(regText, " / "), archText)
	}
	return s.String()
}
