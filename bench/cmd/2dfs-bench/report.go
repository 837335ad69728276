package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

func (b *bench) write() error {
	dt, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.out, "results.json"), dt, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.out, "results.md"), []byte(b.resultsMD()), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(b.out, "results.png"))
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, b.plot())
}

// sortedRows are the rows by experiment, in the order measured within one.
func (b *bench) sortedRows() []*Row {
	rows := slices.Clone(b.res.Rows)
	slices.SortStableFunc(rows, func(x, y *Row) int { return x.Exp - y.Exp })
	return rows
}

// resultsMD is results.md: the run's table, and experiment 9's section
// when it ran beside others.
func (b *bench) resultsMD() string {
	if b.res.CIR != nil && !b.onlyCIR() {
		return b.markdown() + "\n" + b.cirMarkdown()
	}
	return b.markdown()
}

func (b *bench) markdown() string {
	if b.onlyCIR() {
		return b.cirMarkdown()
	}
	r := b.res
	var s strings.Builder
	flags := ""
	if len(r.Flags) > 0 {
		flags = ", flags " + strings.Join(r.Flags, " ")
	}
	fmt.Fprintf(&s, "Run of %s: %d splits × %d MiB (%.0f MB), field %d columns wide, %d runs per figure%s, seed %d; %s; took %.0f s.\n\n",
		r.Started, r.Splits, r.SplitMiB, b.totalBytes()/mb, r.Cols, r.Runs, flags, r.Seed, r.Machine, r.Seconds)
	if len(r.StepSeconds) > 0 {
		var steps []string
		for _, st := range r.StepSeconds {
			steps = append(steps, fmt.Sprintf("%d: %.0f s", st.Exp, st.Seconds))
		}
		fmt.Fprintf(&s, "Time per experiment, in the order run (the rest is starting builders and daemons): %s.\n\n", strings.Join(steps, ", "))
	}
	s.WriteString("Values are medians (min–max) over the runs. *speedup* is the peer's time ÷ ours (above 1: 2DFS is faster); *ours/peer* is our figure ÷ the peer's. " +
		"*ratio* is the ratio of the two medians; *per run* is the ratio within each run, median (min–max). " +
		"A target is met when both statistics meet it, and *undecided* when they disagree. " +
		"*settings*: `" + Equal + "` is every peer exporting the same compression as 2dfs build (`compression=zstd,compression-level=1`); `" +
		EqualGzip + "` is 2dfs exporting gzip, BuildKit's default; `" + Defaults + "` is each tool at its defaults.\n\n")
	s.WriteString("| # | figure | settings | 2DFS / proxy | peer | peer value | ratio | per run | target | met |\n")
	s.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range b.sortedRows() {
		ratio, perRun := "", ""
		if len(row.Ratios) > 0 {
			ratio = fmtNum(row.RatioOfMedians) + "× " + row.RatioKind
			perRun = fmtStat(row.Ratios, "×")
		}
		fmt.Fprintf(&s, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Exp, row.Name, row.Settings, fmtStat(row.Ours, row.Unit),
			row.Peer, fmtStat(row.PeerVals, row.Unit), ratio, perRun, row.Target, row.verdict())
	}
	s.WriteString("\nDetails (phase times are medians from BuildKit's plain progress: context transfer, copy vertices summed, layer export = diff + compression, push):\n\n")
	for _, row := range b.sortedRows() {
		if row.Detail != "" {
			fmt.Fprintf(&s, "- %d. %s: %s\n", row.Exp, row.label(), row.Detail)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&s, "- %s\n", n)
	}
	if said := b.summary(); said != "" {
		s.WriteString("\nWhat this run says (sentences generated from the rows above):\n\n" + said)
	}
	return s.String()
}

// plot draws the median ratio of every figure that has one as a
// horizontal bar on a log scale, with a line at 1: green where the target
// is met, red where it is missed, blue where there is no target.
func (b *bench) plot() image.Image {
	var rows []*Row
	for _, r := range b.sortedRows() {
		if len(r.Ratios) > 0 {
			rows = append(rows, r)
		}
	}
	const (
		labelW = 560
		barW   = 520
		rowH   = 18
		top    = 40
	)
	w, h := labelW+barW+90, top+rowH*len(rows)+40
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(x, y int, s string, c color.Color) {
		// basicfont is ASCII only.
		s = strings.NewReplacer("×", "x", "–", "-", "≥", ">=", "≤", "<=").Replace(s)
		d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	lo, hi := 0.1, 10.0
	for _, r := range rows {
		m := r.RatioOfMedians
		if m > 0 && !math.IsInf(m, 0) {
			hi = math.Max(hi, m*1.2)
			lo = math.Min(lo, m/1.2)
		}
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	xOf := func(v float64) int {
		v = math.Max(lo, math.Min(hi, v))
		return labelW + int(float64(barW)*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
	}
	text(10, 18, fmt.Sprintf("2DFS benchmark: ratio of medians per figure (log scale; speedup = peer time / ours, ours/peer otherwise). %d × %d MiB splits, %d runs",
		b.splits, b.splitMiB, b.runs), color.Black)
	grid := color.RGBA{220, 220, 220, 255}
	for d := lo; d <= hi*1.001; d *= 10 {
		x := xOf(d)
		for y := top - 5; y < top+rowH*len(rows); y++ {
			img.Set(x, y, grid)
		}
		text(x-8, top+rowH*len(rows)+15, fmtNum(d)+"×", color.Gray{90})
	}
	for i, r := range rows {
		y := top + i*rowH
		label := fmt.Sprintf("%d %s", r.Exp, r.label())
		if r.RatioKind != Speedup {
			label += " [ours/peer]"
		}
		if len(label) > labelW/7-1 {
			label = label[:labelW/7-4] + "..."
		}
		text(5, y+13, label, color.Black)
		c := color.RGBA{70, 110, 200, 255}
		if r.Met != nil {
			c = map[bool]color.RGBA{true: {60, 160, 80, 255}, false: {210, 70, 60, 255}}[*r.Met]
		}
		m := r.RatioOfMedians
		x0, x1 := xOf(1), xOf(m)
		if x1 < x0 {
			x0, x1 = x1, x0
		}
		draw.Draw(img, image.Rect(x0, y+3, max(x1, x0+1), y+rowH-3), image.NewUniform(c), image.Point{}, draw.Src)
		text(labelW+barW+8, y+13, fmtNum(m)+"×", color.Black)
	}
	one := xOf(1)
	for y := top - 5; y < top+rowH*len(rows); y++ {
		img.Set(one, y, color.Black)
	}
	return img
}
