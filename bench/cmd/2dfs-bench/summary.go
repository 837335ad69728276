package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// This file turns a run's rows into the sentences and the README table that
// quote its numbers, so prose and tables come from one results.json and
// cannot disagree.

// keyOfName keys rows that experiment 5 (proxy.go) adds without one.
var keyOfName = map[string]string{
	"blob pass-through, 1 client(s)":                               "proxy/blob",
	"blob pass-through, 1 client(s), against a bare TCP forwarder": "proxy/blob-floor",
}

// row finds a figure by its key; nil when the run did not measure it.
func (b *bench) row(key string) *Row {
	for _, r := range b.res.Rows {
		if r.Key == key || (r.Key == "" && keyOfName[r.Name] == key) {
			return r
		}
	}
	return nil
}

// ratioOf is a row's ratio of medians with its per-run spread:
// "2.01× (per run 1.9–2.3)".
func ratioOf(r *Row) string {
	if r == nil || len(r.Ratios) == 0 {
		return "–"
	}
	if len(r.Ratios) == 1 {
		return fmtNum(r.RatioOfMedians) + "×"
	}
	return fmt.Sprintf("%s× (per run %s–%s)", fmtNum(r.RatioOfMedians), fmtNum(slices.Min(r.Ratios)), fmtNum(slices.Max(r.Ratios)))
}

// spanOf is the range of the ratios of medians of the rows found:
// "2.0–2.2×", or one value.
func (b *bench) spanOf(keys ...string) string {
	var v []float64
	for _, k := range keys {
		if r := b.row(k); r != nil && len(r.Ratios) > 0 {
			v = append(v, r.RatioOfMedians)
		}
	}
	switch {
	case len(v) == 0:
		return ""
	case fmtNum(slices.Min(v)) == fmtNum(slices.Max(v)):
		return fmtNum(v[0]) + "×"
	default:
		return fmtNum(slices.Min(v)) + "–" + fmtNum(slices.Max(v)) + "×"
	}
}

// rebuildKeys are the keys of the re-build rows of one direction and peer.
func (b *bench) rebuildKeys(dir, peer string) []string {
	var keys []string
	for _, r := range b.res.Rows {
		if r.Exp == 2 && strings.Contains(r.Key, "-"+dir+"/") && strings.HasSuffix(r.Key, "/"+peer) {
			keys = append(keys, r.Key)
		}
	}
	return keys
}

// summary is the run's findings as sentences, every number from a row.
func (b *bench) summary() string {
	var s strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&s, "- "+format+"\n", args...) }
	if b.row("cold/link") != nil {
		say("**Cold build**, at equal compression (zstd -1 on both sides): 2DFS is %s as fast as COPY --link and %s as fast as COPY, %s as fast as %d single-split images. "+
			"With gzip on both sides: %s COPY --link. At each tool's defaults (ours zstd -1, theirs gzip): %s COPY --link, %s COPY, %s the single images.",
			ratioOf(b.row("cold/link")), ratioOf(b.row("cold/copy")), ratioOf(b.row("cold/singles")), b.res.Splits,
			ratioOf(b.row("cold/link-gzip")), ratioOf(b.row("cold/link-defaults")), ratioOf(b.row("cold/copy-defaults")), ratioOf(b.row("cold/singles-defaults")))
	}
	if r := b.row("cold/direct-link"); r != nil {
		noop, rss := b.row("noop/direct"), "–"
		if m := b.row("cold/direct-rss"); m != nil {
			rss = fmtStat(m.Ours, m.Unit)
		}
		say("**Direct engine** (`2dfs build --engine direct`), cold at equal compression: %s as fast as COPY --link (target %s: %s), %s as fast as the BuildKit engine; "+
			"its time ÷ the registry receiving the same layers as raw blob uploads: %s (target %s: %s). No-op: %s, %s as fast as the BuildKit engine's %s (target under 100 ms: %s). "+
			"Re-build of the last splits: %s COPY --link; base change: %s COPY --link. Peak memory of the 2dfs process: %s.",
			ratioOf(r), r.Target, strings.Trim(r.verdict(), "*"), ratioOf(b.row("cold/direct-buildkit")),
			ratioOf(b.row("cold/direct-floor")), b.row("cold/direct-floor").Target, strings.Trim(b.row("cold/direct-floor").verdict(), "*"),
			fmtStat(noop.Ours, noop.Unit), ratioOf(noop), fmtStat(noop.PeerVals, noop.Unit), strings.Trim(b.row("noop/direct-time").verdict(), "*"),
			b.spanOf(b.rebuildKeys("bottom", "direct-link")...), ratioOf(b.row("base/direct-link")), rss)
	}
	if len(b.rebuildKeys("bottom", "copy")) > 0 {
		say("**Re-build after changing the last splits** (ratios of medians over the percentages measured): %s COPY and %s COPY --link at equal compression; %s and %s at the defaults. "+
			"After changing the first splits: %s COPY and %s COPY --link at equal compression; %s and %s at the defaults.",
			b.spanOf(b.rebuildKeys("bottom", "copy")...), b.spanOf(b.rebuildKeys("bottom", "link")...),
			b.spanOf(b.rebuildKeys("bottom", "copy-defaults")...), b.spanOf(b.rebuildKeys("bottom", "link-defaults")...),
			b.spanOf(b.rebuildKeys("top", "copy")...), b.spanOf(b.rebuildKeys("top", "link")...),
			b.spanOf(b.rebuildKeys("top", "copy-defaults")...), b.spanOf(b.rebuildKeys("top", "link-defaults")...))
	}
	if r := b.row("base/copy"); r != nil {
		say("**Base change**: 2DFS takes %s and re-builds %s allotments; against COPY %s at equal compression, %s at the defaults; against COPY --link %s and %s.",
			fmtStat(r.Ours, r.Unit), fmtStat(b.row("base/rebuilt").Ours, ""), ratioOf(r), ratioOf(b.row("base/copy-defaults")),
			ratioOf(b.row("base/link")), ratioOf(b.row("base/link-defaults")))
	}
	if r := b.row("pull/time"); r != nil {
		say("**Partition pull** through the proxy against the same image pulled directly, %d pulls of each path: ratio of medians %s×, median of the per-pull ratios %s×, per-pull ratios %s–%s; target %s: %s. "+
			"The pre-built image through the proxy (the hop alone): %s. Bytes: %s.",
			len(r.Ratios), fmtNum(r.RatioOfMedians), fmtNum(median(r.Ratios)), fmtNum(slices.Min(r.Ratios)), fmtNum(slices.Max(r.Ratios)),
			r.Target, strings.Trim(r.verdict(), "*"), ratioOf(b.row("pull/hop")), ratioOf(b.row("pull/bytes")))
	}
	if r := b.row("proxy/blob"); r != nil {
		say("**Blob pass-through**, 1 client: %s through the proxy against %s from the registry, %s; against a bare TCP forwarder (the floor of one more loopback hop) %s.",
			fmtStat(r.Ours, r.Unit), fmtStat(r.PeerVals, r.Unit), ratioOf(r), ratioOf(b.row("proxy/blob-floor")))
	}
	var fast, bounds []string
	for _, c := range []string{"zstd -1", "zstd -3", "uncompressed"} {
		if r := b.row("throughput/" + c); r != nil {
			fast = append(fast, "throughput/"+c)
			if bound := strings.TrimPrefix(r.Peer, "bound: "); !slices.Contains(bounds, bound) {
				bounds = append(bounds, bound)
			}
		}
	}
	if r := b.row("throughput/gzip"); r != nil && len(fast) > 0 {
		say("**Build throughput against this machine**: gzip builds reach %s of their bound (%s); zstd -1, zstd -3 and uncompressed builds %s of theirs (%s).",
			ratioOf(r), strings.TrimPrefix(r.Peer, "bound: "), b.spanOf(fast...), strings.Join(bounds, "; "))
	}
	return s.String()
}

// readmeKeys are the figures of the README's table, equal settings first.
var readmeKeys = []string{
	"cold/direct-link", "cold/direct-buildkit", "cold/direct-floor", "noop/direct", "rebuild/25-bottom/direct-link", "base/direct-link",
	"cold/link", "cold/copy", "cold/singles", "cold/link-gzip", "cold/link-defaults", "cold/copy-defaults",
	"rebuild/25-bottom/copy", "rebuild/25-bottom/link", "rebuild/25-bottom/copy-defaults", "rebuild/25-bottom/link-defaults",
	"rebuild/25-top/copy", "rebuild/25-top/copy-defaults",
	"base/copy", "base/link", "base/copy-defaults", "base/link-defaults",
	"pull/time", "pull/bytes",
}

// readme is the README's summary: a table of the main figures.
func (b *bench) readme() string {
	var s strings.Builder
	flags := "defaults"
	if len(b.res.Flags) > 0 {
		flags = strings.Join(b.res.Flags, " ")
	}
	fmt.Fprintf(&s, "Run of %s (`hack/bench` %s): %d splits × %d MiB (%.0f MB), %d runs per figure, on %s. "+
		"*speedup* is the peer's time ÷ ours (above 1: 2DFS is faster), *ours/peer* our time ÷ the peer's.\n\n",
		b.res.Started[:min(10, len(b.res.Started))], flags, b.res.Splits, b.res.SplitMiB, b.totalBytes()/mb, b.res.Runs, b.res.Machine)
	s.WriteString("| figure | settings | 2DFS | peer | ratio of medians (per run) |\n| --- | --- | --- | --- | --- |\n")
	for _, k := range readmeKeys {
		r := b.row(k)
		if r == nil {
			continue
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s %s | %s %s |\n", r.Name, r.Settings, fmtStat(r.Ours, r.Unit), r.Peer, fmtStat(r.PeerVals, r.Unit), ratioOf(r), r.RatioKind)
	}
	return s.String()
}

// renderFile reads a results.json, writes results.md beside it, and
// regenerates the sections of the markdown files in update: the text
// between "<!-- bench:results -->" and "<!-- /bench:results -->" (the
// whole results.md) and between "<!-- bench:readme -->" and
// "<!-- /bench:readme -->" (the README table).
func renderFile(path, update string) error {
	dt, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(dt, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	b := &bench{config: config{splits: res.Splits, splitMiB: res.SplitMiB, runs: res.Runs}, res: &res}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "results.md"), []byte(b.resultsMD()), 0o644); err != nil {
		return err
	}
	sections := b.sections()
	for _, f := range strings.Split(update, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		out, n, err := replaceSections(string(text), sections)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if n == 0 {
			return fmt.Errorf("%s: no <!-- bench:NAME --> section this run has figures for (%s)", f, strings.Join(sortedKeys(sections), ", "))
		}
		if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// sectionNames are the generated sections: the default run's (results,
// readme) and experiment 9's (cir, cir-readme).
var sectionNames = []string{"results", "readme", "cir", "cir-readme"}

// sections are the generated sections this run has figures for: a run of
// hack/bench -cir regenerates the CIR sections and leaves the default
// run's as they are, and the other way round.
func (b *bench) sections() map[string]string {
	out := map[string]string{}
	if !b.onlyCIR() && len(b.res.Rows) > 0 {
		out["results"], out["readme"] = b.markdown(), b.readme()
	}
	if b.res.CIR != nil {
		out["cir"], out["cir-readme"] = b.cirMarkdown(), b.cirReadme()
	}
	return out
}

// replaceSections replaces the body of every "<!-- bench:NAME -->" ...
// "<!-- /bench:NAME -->" pair in text with sections[NAME], and says how many
// it replaced. A known section the run has no figures for is left as it
// is. An opening marker without its closing one, or an unknown name, is an
// error naming the line.
func replaceSections(text string, sections map[string]string) (string, int, error) {
	var out strings.Builder
	n := 0
	lines := strings.SplitAfter(text, "\n")
	for i := 0; i < len(lines); i++ {
		out.WriteString(lines[i])
		name, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "<!-- bench:")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, " -->")
		body, ok := sections[name]
		if !ok && !slices.Contains(sectionNames, name) {
			return "", 0, fmt.Errorf("line %d: unknown section %q", i+1, name)
		}
		end := "<!-- /bench:" + name + " -->"
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) != end {
			j++
		}
		if j == len(lines) {
			return "", 0, fmt.Errorf("line %d: %q has no closing %q", i+1, strings.TrimSpace(lines[i]), end)
		}
		if !ok {
			// Not measured by this run: keep the section's text.
			for _, l := range lines[i+1 : j+1] {
				out.WriteString(l)
			}
			i = j
			continue
		}
		out.WriteString("\n" + strings.TrimRight(body, "\n") + "\n\n")
		out.WriteString(lines[j])
		i = j
		n++
	}
	return out.String(), n, nil
}
