package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// Formats of a field image, as Inspect reports them.
const (
	// FormatRecord is ours: allotments are manifest layers and the config
	// label org.2dfs.field says which (docs/field-record.md).
	FormatRecord = "record"
	// FormatReference is the reference 2DFS format: a field blob layer
	// (docs/reference-format.md).
	FormatReference = "reference"
)

// Report is what Inspect finds about an image; `2dfs inspect --json` prints
// it as is.
type Report struct {
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Images    []ImageReport `json:"images"`
}

// ImageReport is the field of one platform image.
type ImageReport struct {
	Platform string        `json:"platform,omitempty"`
	Manifest digest.Digest `json:"manifest"`
	Format   string        `json:"format"`
	// Selection is set for a partition: what it was cut with.
	Selection  string            `json:"selection,omitempty"`
	BaseLayers []LayerReport     `json:"baseLayers"`
	BaseSize   int64             `json:"baseSize"`
	Rows       int               `json:"rows"`
	Cols       int               `json:"cols"`
	Allotments []AllotmentReport `json:"allotments"`
	// CIR is the record of a CIR image (docs/cir.md); nil for other images.
	CIR *cir.Record `json:"cir,omitempty"`
	// Warning says when the image has too many layers to run whole
	// (field.RunnableWarning).
	Warning string `json:"warning,omitempty"`
}

// LayerReport is a base layer.
type LayerReport struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
}

// AllotmentReport is an allotment: the layer a cell holds.
type AllotmentReport struct {
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

// inspected is one image's report and what is wrong with it.
type inspected struct {
	report  *ImageReport
	problem error
}

// Inspect reads every platform image of the image ref names in src, or the
// one platform (os/arch[/variant]) picks. A report with problems (missing
// allotment blobs) comes back with the error, so a picture can show where
// they are; an image that cannot be read at all is an error and no report.
func Inspect(ctx context.Context, src Source, ref, platform string) (*Report, error) {
	data, mediaType, err := root(ctx, src, ref)
	if err != nil {
		return nil, err
	}
	report := &Report{Digest: digest.FromBytes(data), MediaType: mediaType}
	var problems []error
	add := func(in inspected, p string) {
		ir := *in.report
		if p != "" {
			ir.Platform = p
		}
		ir.Warning = field.RunnableWarning(len(ir.BaseLayers), len(ir.Allotments))
		report.Images = append(report.Images, ir)
		if in.problem != nil {
			problems = append(problems, in.problem)
		}
	}
	inspect := func(ctx context.Context, m []byte, d ocispec.Descriptor) (inspected, error) {
		r, err := inspectManifest(ctx, src, m)
		if r == nil {
			return inspected{}, err
		}
		return inspected{r, err}, nil
	}
	switch {
	case partition.IsIndex(mediaType):
		entries, err := children(data, true, partition.DefaultLimits)
		if err != nil {
			return nil, err
		}
		var match platforms.Matcher
		if platform != "" {
			want, err := platforms.Parse(platform)
			if err != nil {
				return nil, err
			}
			match = platforms.OnlyStrict(want)
		}
		kept := entries[:0]
		for _, e := range entries {
			if e.desc.Platform == nil || match == nil || match.Match(*e.desc.Platform) {
				kept = append(kept, e)
			}
		}
		done, err := eachChild(ctx, src, kept, inspect)
		if err != nil {
			return nil, err
		}
		for _, e := range kept {
			p := ""
			if e.desc.Platform != nil {
				p = platforms.Format(*e.desc.Platform)
			}
			add(done[e.desc.Digest], p)
		}
		if len(report.Images) == 0 {
			return nil, fmt.Errorf("no image for platform %q", platform)
		}
	case partition.IsManifest(mediaType):
		in, err := inspect(ctx, data, ocispec.Descriptor{})
		if err != nil {
			return nil, err
		}
		add(in, "")
	default:
		return nil, notAnImage(mediaType)
	}
	return report, errors.Join(problems...)
}

// inspectManifest reads one image, ours or reference-format. It returns a
// partial result and an error for allotment blobs that are missing.
func inspectManifest(ctx context.Context, src Source, manifest []byte) (*ImageReport, error) {
	if tdfs.IsReference(manifest) {
		return inspectReference(ctx, src, manifest)
	}
	cd, err := partition.ConfigOf(manifest)
	if err != nil {
		return nil, err
	}
	config, err := src.Blob(ctx, cd, partition.MaxConfigBytes)
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
	r := &ImageReport{
		Platform:  platformOf(&img),
		Manifest:  digest.FromBytes(manifest),
		Format:    FormatRecord,
		Selection: img.Config.Labels[partition.LabelSelection],
	}
	if r.CIR, err = cir.FromConfig(&img); err != nil {
		return nil, err
	}
	for _, l := range m.Layers[:rec.BaseLayers] {
		r.AddBase(l)
	}
	for _, a := range rec.Allotments {
		l := m.Layers[a.Layer]
		r.AddAllotment(AllotmentReport{Row: a.Row, Col: a.Col, Digest: l.Digest, DiffID: img.RootFS.DiffIDs[a.Layer], Size: l.Size, MediaType: l.MediaType, Paths: a.Dst})
	}
	return r, nil
}

func inspectReference(ctx context.Context, src Source, manifest []byte) (*ImageReport, error) {
	m, err := tdfs.ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	config, err := src.Blob(ctx, m.Config, partition.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	blob, err := src.Blob(ctx, m.Field, tdfs.MaxFieldBytes)
	if err != nil {
		return nil, fmt.Errorf("field blob: %w", err)
	}
	f, err := m.ReadField(blob)
	if err != nil {
		return nil, err
	}
	paths, err := tdfs.Paths(&img)
	if err != nil {
		return nil, err
	}
	r := &ImageReport{Platform: platformOf(&img), Manifest: digest.FromBytes(manifest), Format: FormatReference}
	for _, l := range m.Base {
		r.AddBase(l)
	}
	var missing []error
	for _, e := range f.Entries {
		a := AllotmentReport{Row: e.Row, Col: e.Col, Digest: e.Digest, DiffID: e.DiffID, MediaType: ocispec.MediaTypeImageLayerGzip, Paths: paths[e.Cell()]}
		if a.Size, err = src.Size(ctx, e.Digest); err != nil {
			a.Size, a.Missing = -1, true
			missing = append(missing, fmt.Errorf("allotment %s: %w", e.Cell(), err))
		}
		r.AddAllotment(a)
	}
	return r, errors.Join(missing...)
}

func platformOf(img *ocispec.Image) string {
	if img.OS == "" {
		return ""
	}
	return platforms.Format(ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant})
}

// AddBase adds a base layer.
func (r *ImageReport) AddBase(l ocispec.Descriptor) {
	r.BaseLayers = append(r.BaseLayers, LayerReport{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	r.BaseSize += l.Size
}

// AddAllotment adds an allotment and grows the field to hold it.
func (r *ImageReport) AddAllotment(a AllotmentReport) {
	if a.Paths == nil {
		a.Paths = []string{}
	}
	r.Allotments = append(r.Allotments, a)
	r.Rows = max(r.Rows, a.Row+1)
	r.Cols = max(r.Cols, a.Col+1)
}
