package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/internal/printable"
)

type inspectFlags struct {
	registryFlags
	json     bool
	platform string
}

func newInspectCommand() *cobra.Command {
	var f inspectFlags
	cmd := &cobra.Command{
		Use:   "inspect [flags] REF",
		Short: "Show the field of a 2DFS image: allotments by row and column, sizes and paths",
		Long: `Inspect draws the field of a 2DFS image as a grid, one per platform: each
cell shows the allotment's compressed size and the paths it writes, empty
cells show as '.', and the base layers are summed up above the grid. It reads
our images and images in the reference 2DFS format; for the latter every
allotment blob is checked to exist in the registry.

REF is a registry reference (a tag, a digest, or a partition tag) or
oci-layout://PATH[:TAG]. --json prints the same facts for scripts.`,
		Example: `  2dfs inspect localhost:5000/models/llm:v1
  2dfs inspect --platform linux/arm64 --json registry.example.com/m:v1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd.Context(), f, args[0], cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	f.registryFlags.register(fl)
	fl.BoolVar(&f.json, "json", false, "print JSON instead of a picture")
	fl.StringVar(&f.platform, "platform", "", "show only this platform (os/arch[/variant])")
	return cmd
}

func runInspect(ctx context.Context, f inspectFlags, ref string, out io.Writer) error {
	src, err := openStore(ctx, ref, &f.registryFlags)
	if err != nil {
		return err
	}
	report, problems := image.Inspect(ctx, src, "", f.platform)
	if report == nil {
		return problems
	}
	report.Reference = src.String()
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		renderReport(out, report)
	}
	return problems
}

func renderReport(w io.Writer, r *image.Report) {
	fmt.Fprintf(w, "%s\n%s %s\n", r.Reference, kindOf(r.MediaType), r.Digest)
	for i := range r.Images {
		fmt.Fprintln(w)
		renderField(w, &r.Images[i])
	}
}

func kindOf(mediaType string) string {
	if partition.IsIndex(mediaType) {
		return "index"
	}
	return "manifest"
}

// Cell drawing limits: a cell is at most cellWidth characters wide and
// shows at most cellPaths paths, so a field with long paths stays readable.
const (
	cellWidth = 28
	cellPaths = 3
)

// renderField draws one image's field: a header, the base layers in one
// line, and the grid. Row and column numbers label the grid; every cell of
// the rows × cols extent is drawn, so holes are visible.
func renderField(w io.Writer, pf *image.ImageReport) {
	var total int64 = pf.BaseSize
	for _, c := range pf.Allotments {
		total += max(c.Size, 0)
	}
	// Platform, selection and paths come from the image, which anyone may
	// have built: none of their bytes may reach the terminal raw.
	title := printable.String(pf.Platform)
	if title == "" {
		title = "(no platform)"
	}
	fmt.Fprintf(w, "%s  manifest %s  format %s\n", title, pf.Manifest, pf.Format)
	if pf.Selection != "" {
		fmt.Fprintf(w, "partition of selection %s\n", printable.String(pf.Selection))
	}
	fmt.Fprintf(w, "base: %s, %s; field: %s in %d×%d, %s; total %s\n",
		plural(len(pf.BaseLayers), "layer"), humanSize(pf.BaseSize), plural(len(pf.Allotments), "allotment"), pf.Rows, pf.Cols, humanSize(total-pf.BaseSize), humanSize(total))
	if pf.Warning != "" {
		fmt.Fprintf(w, "warning: %s\n", pf.Warning)
	}
	if len(pf.Allotments) == 0 {
		fmt.Fprintln(w, "(empty field)")
		return
	}

	cells := make(map[field.Cell][]string, len(pf.Allotments))
	for _, c := range pf.Allotments {
		cells[field.Cell{Row: c.Row, Col: c.Col}] = cellLines(c)
	}
	widths := make([]int, pf.Cols)
	for col := range widths {
		widths[col] = utf8.RuneCountInString(fmt.Sprint(col))
	}
	for cell, lines := range cells {
		for _, l := range lines {
			widths[cell.Col] = max(widths[cell.Col], utf8.RuneCountInString(l))
		}
	}
	label := len(fmt.Sprint(pf.Rows - 1))

	var rule strings.Builder
	rule.WriteString(strings.Repeat(" ", label+1) + "+")
	for _, wd := range widths {
		rule.WriteString(strings.Repeat("-", wd+2) + "+")
	}
	var head strings.Builder
	head.WriteString(strings.Repeat(" ", label+2))
	for col, wd := range widths {
		head.WriteString(" " + pad(fmt.Sprint(col), wd) + "  ")
	}
	fmt.Fprintln(w, strings.TrimRight(head.String(), " "))
	fmt.Fprintln(w, rule.String())
	for row := range pf.Rows {
		height := 1
		for col := range pf.Cols {
			height = max(height, len(cells[field.Cell{Row: row, Col: col}]))
		}
		for line := range height {
			var b strings.Builder
			if line == 0 {
				b.WriteString(fmt.Sprintf("%*d |", label, row))
			} else {
				b.WriteString(strings.Repeat(" ", label) + " |")
			}
			for col, wd := range widths {
				lines, ok := cells[field.Cell{Row: row, Col: col}]
				text := ""
				switch {
				case !ok && line == 0:
					text = "."
				case line < len(lines):
					text = lines[line]
				}
				b.WriteString(" " + pad(text, wd) + " |")
			}
			fmt.Fprintln(w, b.String())
		}
		fmt.Fprintln(w, rule.String())
	}
}

// cellLines is what a cell shows: its size (or MISSING), then its paths,
// each cut from the left to fit, at most cellPaths of them.
func cellLines(c image.AllotmentReport) []string {
	first := humanSize(c.Size)
	if c.Missing {
		first = "MISSING " + c.Digest.Encoded()[:12]
	}
	lines := []string{first}
	for i, p := range c.Paths {
		if i == cellPaths {
			lines = append(lines, fmt.Sprintf("+%d more", len(c.Paths)-cellPaths))
			break
		}
		lines = append(lines, shorten(printable.String(p), cellWidth))
	}
	return lines
}

// shorten keeps the end of a path, the part that tells files apart.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func pad(s string, n int) string {
	return s + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s)))
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n), 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[exp-1])
}
