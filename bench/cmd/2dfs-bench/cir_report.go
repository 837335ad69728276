package main

import (
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

	s.WriteString("**Size** (bytes a registry stores: manifest, config, compressed layers; target: the CIR at most 5 % of one fat image):\n\n")
	s.WriteString("| platform | CIR | fat image | CIR ÷ fat | fat minus base | CIR ÷ (fat minus base) | assembled by deploy |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, p := range append(slices.Clone(cirPlatforms), "sum") {
		size, added, asm := b.row("cir/size/"+p), b.row("cir/added/"+p), b.row("cir/assembled/"+p)
		if size == nil {
			continue
		}
		name, asmText := p, "–"
		if p == "sum" {
			name = strings.Join(cirPlatforms, " + ")
		}
		if asm != nil {
			asmText = fmt.Sprintf("%s, %d layers (fat: %d)", mbOf(asm.Ours), info.AssembledLayers[p], info.FatLayers[p])
		}
		addedMB := "–"
		if added != nil {
			addedMB = mbOf(added.PeerVals)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s |\n", name, fmtBytes(size.Ours), mbOf(size.PeerVals), pctOf(size), addedMB, pctOf(added), asmText)
	}
	s.WriteString("\nThe CIR is one manifest for every platform and holds no base layer; a fat image holds its base, so *fat minus base* (the layers the Dockerfile adds) is the fairer comparison for a node that already has the base. " +
		"The assembled image is what `2dfs deploy` makes from the CIR: the base, one layer per package, an alternatives layer and the application.\n\n")

	fmt.Fprintf(&s, "**Deploy through the registry** on a %s node whose buildkitd is not its runtime's (a fresh buildkitd with an empty cache and a fresh containerd content store per case; the time until the node's containerd holds the application: `2dfs deploy --push` then `ctr images pull`, against `ctr images pull` of the pre-built fat image; cases interleaved and rotated per run):\n\n", node)
	s.WriteString("| case | CIR deploy + pull | fat pull | speedup (per run) | target | met | registry → node, CIR / fat | .debs from the archive |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, k := range []string{"a", "b", "c"} {
		t, reg, arch := b.row("cir/deploy/"+k), b.row("cir/registry/"+k), b.row("cir/archive/"+k)
		if t == nil {
			continue
		}
		regText, archText := "–", "–"
		if reg != nil {
			regText = fmtSpread(reg.Ours, "MB") + " / " + fmtSpread(reg.PeerVals, "MB")
		}
		if arch != nil {
			archText = fmtSpread(arch.Ours, "MB")
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", cirCaseNames[k], fmtStat(t.Ours, "s"), fmtStat(t.PeerVals, "s"), ratioOf(t), t.Target, t.verdict(), regText, archText)
	}
	s.WriteString("\nCases: (a) empty caches; (b) application b deployed and pulled on the same node first (same buildkitd cache, containerd holding its layers), against the fat image of a pulled onto a node holding the fat image of b; " +
		"(c) a fresh buildkitd deploying with `--cache-from type=registry` of the dependency cache an earlier deploy of a filled with `--cache-to ...,mode=max`, against the fat pull on a fresh node.\n\n")
	s.WriteString(b.cirNodeMarkdown())

	s.WriteString("Details:\n\n")
	for _, row := range b.sortedRows() {
		if row.Exp == expCIR && row.Detail != "" && (strings.HasPrefix(row.Key, "cir/deploy/") || strings.HasPrefix(row.Key, "cir/node/deploy/") || strings.HasPrefix(row.Key, "cir/size/")) {
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
	fmt.Fprintf(&s, "- Fat image builds (buildctl, dockerfile.v0, one platform each; linux/arm64's RUN under qemu-user-static): %s. Their apt-get install fetched %s MB (amd64) and %s MB (arm64) of .debs.\n",
		strings.Join(builds, ", "), fmtNum(info.FatDebsMB["linux/amd64"]), fmtNum(info.FatDebsMB["linux/arm64"]))
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

// cirSummary is the run's findings as sentences, every number from a row.
func (b *bench) cirSummary() string {
	var s strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&s, "- "+format+"\n", args...) }
	if r := b.row("cir/size/" + cirPlatforms[0]); r != nil {
		say("**Size**: the CIR is %s of the linux/amd64 fat image and %s of what that image adds over its base; %s of both platforms' fat images together.",
			pctOf(r), pctOf(b.row("cir/added/"+cirPlatforms[0])), pctOf(b.row("cir/size/sum")))
	}
	if a := b.row("cir/deploy/a"); a != nil {
		bound := ""
		if arch := b.row("cir/archive/a"); arch != nil {
			bound = fmt.Sprintf(" It is bounded by the Debian archive and the unpacking: %s MB of .debs fetched from deb.debian.org and one unpack container per package, inside 2dfs deploy's time (details above), before the node pulls every layer.", fmtNum(median(arch.Ours)))
		}
		say("**(a) empty caches**: CIR deploy + pull takes %s against the fat pull's %s, speedup %s.%s", fmtStat(a.Ours, "s"), fmtStat(a.PeerVals, "s"), ratioOf(a), bound)
	}
	for _, k := range []string{"b", "c"} {
		if r := b.row("cir/deploy/" + k); r != nil {
			say("**(%s)** through the registry: %s against %s, speedup %s; target %s: %s.", k, fmtStat(r.Ours, "s"), fmtStat(r.PeerVals, "s"), ratioOf(r), r.Target, strings.ReplaceAll(r.verdict(), "**", ""))
		}
	}
	for _, n := range cirNodeSpecs {
		if r := b.row("cir/node/deploy/" + n.key); r != nil {
			met := ""
			if r.Target != "" {
				met = fmt.Sprintf("; target %s: %s", r.Target, strings.ReplaceAll(r.verdict(), "**", ""))
			}
			say("**Node-side %s**: %s against %s, speedup %s%s.", n.name, fmtStat(r.Ours, "s"), fmtStat(r.PeerVals, "s"), ratioOf(r), met)
		}
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
		"a numpy + pandas + scikit-learn app from Debian, the CIR against the image a Dockerfile `RUN apt-get install` makes.\n\n",
		b.res.Started[:min(10, len(b.res.Started))], b.res.Runs)
	s.WriteString("| figure | CIR | fat image | ratio |\n| --- | --- | --- | --- |\n")
	for _, p := range append(slices.Clone(cirPlatforms), "sum") {
		if r := b.row("cir/size/" + p); r != nil {
			fmt.Fprintf(&s, "| size, %s | %s | %s | %s |\n", strings.ReplaceAll(p, "sum", "both platforms"), fmtBytes(r.Ours), mbOf(r.PeerVals), pctOf(r))
		}
	}
	if r := b.row("cir/added/" + cirPlatforms[0]); r != nil {
		fmt.Fprintf(&s, "| size against fat minus base, %s | %s | %s | %s |\n", cirPlatforms[0], fmtBytes(r.Ours), mbOf(r.PeerVals), pctOf(r))
	}
	for _, k := range []string{"a", "b", "c"} {
		if r := b.row("cir/deploy/" + k); r != nil {
			name := map[string]string{"a": "deploy, empty caches", "b": "deploy, app sharing its dependencies already on the node", "c": "deploy, fresh node with --cache-from a registry dependency cache"}[k]
			fmt.Fprintf(&s, "| %s (deploy --push + pull) | %s | %s | speedup %s |\n", name, fmtStat(r.Ours, "s"), fmtStat(r.PeerVals, "s"), ratioOf(r))
		}
	}
	for _, n := range cirNodeSpecs {
		if r := b.row("cir/node/deploy/" + n.key); r != nil {
			fmt.Fprintf(&s, "| deploy on the node's containerd-worker buildkitd, %s | %s | %s | speedup %s |\n", n.name, fmtStat(r.Ours, "s"), fmtStat(r.PeerVals, "s"), ratioOf(r))
		}
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
	var s strings.Builder
	for _, n := range cirNodeSpecs {
		t, reg, arch := b.row("cir/node/deploy/"+n.key), b.row("cir/node/registry/"+n.key), b.row("cir/node/archive/"+n.key)
		if t == nil {
			continue
		}
		if s.Len() == 0 {
			fmt.Fprintf(&s, "**Deploy on the node** (issue 12's node: its buildkitd uses the containerd worker of the node's containerd, so `2dfs deploy --output type=image,name=NAME,unpack=true` leaves the application in containerd's image store, unpacked: no push, no pull; "+
				"a fresh containerd (new root and state) and a fresh buildkitd on it per case; against the same runs' `ctr images pull` of the fat image as above; "+
				"*fresh resolution*: apt resolves the closure in every deploy (`apt-get update`); *--lock*: the deploy uses the lock file the cache-filling deploy of a wrote, as a CI pipeline would commit it, so nothing is resolved):\n\n")
			s.WriteString("| case | CIR deploy into containerd | fat pull | speedup (per run) | target | met | registry → node, CIR / fat | .debs from the archive |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		}
		regText, archText := "–", "–"
		if reg != nil {
			regText = fmtSpread(reg.Ours, "MB") + " / " + fmtSpread(reg.PeerVals, "MB")
		}
		if arch != nil {
			archText = fmtSpread(arch.Ours, "MB")
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", n.name, fmtStat(t.Ours, "s"), fmtStat(t.PeerVals, "s"), ratioOf(t), t.Target, t.verdict(), regText, archText)
	}
	if s.Len() > 0 {
		s.WriteString("\nIn (b) the node deployed b first (fresh resolution in both variants), on the same buildkitd and containerd.\n\n")
	}
	return s.String()
}
