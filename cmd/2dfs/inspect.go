package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// Formats of a field image, as inspect reports them.
const (
	// formatRecord is ours: allotments are manifest layers and the config
	// label org.2dfs.field says which (docs/field-record.md).
	formatRecord = "record"
	// formatReference is the reference 2DFS format: a field blob layer
	// (docs/reference-format.md).
	formatReference = "reference"
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

// inspectReport is what inspect finds; --json prints it as is.
type inspectReport struct {
	Reference string          `json:"reference"`
	Digest    digest.Digest   `json:"digest"`
	MediaType string          `json:"mediaType"`
	Images    []platformField `json:"images"`
}

type platformField struct {
	Platform string        `json:"platform,omitempty"`
	Manifest digest.Digest `json:"manifest"`
	Format   string        `json:"format"`
	// Selection is set for a partition: what it was cut with.
	Selection  string      `json:"selection,omitempty"`
	BaseLayers []layerInfo `json:"baseLayers"`
	BaseSize   int64       `json:"baseSize"`
	Rows       int         `json:"rows"`
	Cols       int         `json:"cols"`
	Allotments []cellInfo  `json:"allotments"`
	// Warning says when the image has too many layers to run whole
	// (field.RunnableWarning).
	Warning string `json:"warning,omitempty"`
}

type layerInfo struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
}

type cellInfo struct {
	Row    int           `json:"row"`
	Col    int           `json:"col"`
	Digest digest.Digest `json:"digest"`
	DiffID digest.Digest `json:"diffID"`
	// Size is the compressed size; -1 when the blob is missing.
	Size      int64    `json:"size"`
	MediaType string   `json:"mediaType,omitempty"`
	Paths     []string `json:"paths"`
	Missing   bool     `json:"missing,omitempty"`
}

func runInspect(ctx context.Context, f inspectFlags, ref string, out io.Writer) error {
	src, err := openStore(ctx, ref, &f.registryFlags)
	if err != nil {
		return err
	}
	report, problems := inspectImage(ctx, src, f.platform)
	if report == nil {
		return problems
	}
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

// inspectImage reads every platform image of src. A report with problems
// (missing allotment blobs) comes back with the error, so the picture can
// show where they are.
func inspectImage(ctx context.Context, src store, platform string) (*inspectReport, error) {
	root, mediaType, err := src.root(ctx)
	if err != nil {
		return nil, err
	}
	mediaType = partition.MediaTypeOf(root, mediaType)
	report := &inspectReport{Reference: src.String(), Digest: digest.FromBytes(root), MediaType: mediaType}
	var problems []error
	add := func(m []byte, mt, p string) error {
		pf, err := inspectManifest(ctx, src, m, mt)
		if pf == nil {
			return err
		}
		if p != "" {
			pf.Platform = p
		}
		pf.Warning = field.RunnableWarning(len(pf.BaseLayers), len(pf.Allotments))
		report.Images = append(report.Images, *pf)
		if err != nil {
			problems = append(problems, err)
		}
		return nil
	}
	switch {
	case partition.IsIndex(mediaType):
		var idx ocispec.Index
		if err := json.Unmarshal(root, &idx); err != nil {
			return nil, fmt.Errorf("%s: index: %w", src, err)
		}
		var match platforms.Matcher
		if platform != "" {
			want, err := platforms.Parse(platform)
			if err != nil {
				return nil, err
			}
			match = platforms.OnlyStrict(want)
		}
		for _, d := range idx.Manifests {
			if isAttestation(d) || !partition.IsManifest(d.MediaType) {
				continue
			}
			p := ""
			if d.Platform != nil {
				if match != nil && !match.Match(*d.Platform) {
					continue
				}
				p = platforms.Format(*d.Platform)
			}
			m, err := src.manifest(ctx, d.Digest)
			if err != nil {
				return nil, err
			}
			if err := add(m, d.MediaType, p); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", src, d.Digest, err)
			}
		}
		if len(report.Images) == 0 {
			return nil, fmt.Errorf("%s has no image for platform %q", src, platform)
		}
	case partition.IsManifest(mediaType):
		if err := add(root, mediaType, ""); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	default:
		return nil, fmt.Errorf("%s is a %q, not an image", src, mediaType)
	}
	return report, errors.Join(problems...)
}

// inspectManifest reads one image, ours or reference-format. It returns a
// partial result and an error for allotment blobs that are missing.
func inspectManifest(ctx context.Context, src store, manifest []byte, mediaType string) (*platformField, error) {
	if tdfs.IsReference(manifest) {
		return inspectReference(ctx, src, manifest)
	}
	cd, err := configOf(manifest)
	if err != nil {
		return nil, err
	}
	config, err := src.blob(ctx, cd.Digest, partition.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	rec, err := field.FromConfig(config)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("not a 2DFS image: no %s label and no %s layer", field.LabelKey, tdfs.MediaTypeField)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if len(m.Layers) != rec.Layers() {
		return nil, fmt.Errorf("manifest has %d layers but the field record describes %d", len(m.Layers), rec.Layers())
	}
	pf := &platformField{
		Platform:  platformOf(&img),
		Manifest:  digest.FromBytes(manifest),
		Format:    formatRecord,
		Selection: img.Config.Labels[partition.LabelSelection],
	}
	for _, l := range m.Layers[:rec.BaseLayers] {
		pf.addBase(l)
	}
	for _, a := range rec.Allotments {
		l := m.Layers[a.Layer]
		pf.addCell(cellInfo{Row: a.Row, Col: a.Col, Digest: l.Digest, DiffID: img.RootFS.DiffIDs[a.Layer], Size: l.Size, MediaType: l.MediaType, Paths: a.Dst})
	}
	return pf, nil
}

func inspectReference(ctx context.Context, src store, manifest []byte) (*platformField, error) {
	m, err := tdfs.ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	config, err := src.blob(ctx, m.Config.Digest, partition.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	_, f, err := fieldOf(ctx, src, m)
	if err != nil {
		return nil, err
	}
	paths, err := tdfs.Paths(&img)
	if err != nil {
		return nil, err
	}
	pf := &platformField{Platform: platformOf(&img), Manifest: digest.FromBytes(manifest), Format: formatReference}
	for _, l := range m.Base {
		pf.addBase(l)
	}
	var missing []error
	for _, a := range f.Allotments {
		c := cellInfo{Row: a.Row, Col: a.Col, Digest: a.Digest, DiffID: a.DiffID, MediaType: ocispec.MediaTypeImageLayerGzip, Paths: paths[a.Cell()]}
		if c.Size, err = src.size(ctx, a.Digest); err != nil {
			c.Size, c.Missing = -1, true
			missing = append(missing, fmt.Errorf("allotment %s: %w", a.Cell(), err))
		}
		pf.addCell(c)
	}
	return pf, errors.Join(missing...)
}

func platformOf(img *ocispec.Image) string {
	if img.OS == "" {
		return ""
	}
	return platforms.Format(ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant})
}

func (pf *platformField) addBase(l ocispec.Descriptor) {
	pf.BaseLayers = append(pf.BaseLayers, layerInfo{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	pf.BaseSize += l.Size
}

func (pf *platformField) addCell(c cellInfo) {
	if c.Paths == nil {
		c.Paths = []string{}
	}
	pf.Allotments = append(pf.Allotments, c)
	pf.Rows = max(pf.Rows, c.Row+1)
	pf.Cols = max(pf.Cols, c.Col+1)
}

func renderReport(w io.Writer, r *inspectReport) {
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
func renderField(w io.Writer, pf *platformField) {
	var total int64 = pf.BaseSize
	for _, c := range pf.Allotments {
		total += max(c.Size, 0)
	}
	title := pf.Platform
	if title == "" {
		title = "(no platform)"
	}
	fmt.Fprintf(w, "%s  manifest %s  format %s\n", title, pf.Manifest, pf.Format)
	if pf.Selection != "" {
		fmt.Fprintf(w, "partition of selection %s\n", pf.Selection)
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
func cellLines(c cellInfo) []string {
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
		lines = append(lines, shorten(p, cellWidth))
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
