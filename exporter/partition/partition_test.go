package partition_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/field"
)

// sel parses a selection; shared with the other rewriter tests.
var sel = partitiontest.Selection

var grid = []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}, {Row: 2, Col: 2}}

// decoded is what tests read back from a partition.
type decoded struct {
	manifest ocispec.Manifest
	raw      map[string]json.RawMessage
	config   ocispec.Image
	cfgRaw   map[string]json.RawMessage
	record   *field.Record
}

func decode(t *testing.T, r *partition.Result) decoded {
	t.Helper()
	var d decoded
	for _, x := range []struct {
		data []byte
		v    any
	}{{r.Manifest, &d.manifest}, {r.Manifest, &d.raw}, {r.Config, &d.config}, {r.Config, &d.cfgRaw}} {
		if err := json.Unmarshal(x.data, x.v); err != nil {
			t.Fatal(err)
		}
	}
	if r.ManifestDigest != digest.FromBytes(r.Manifest) || r.ConfigDigest != digest.FromBytes(r.Config) {
		t.Fatal("result digests do not match the bytes")
	}
	if d.manifest.Config.Digest != r.ConfigDigest || d.manifest.Config.Size != int64(len(r.Config)) {
		t.Fatalf("manifest config descriptor %v does not point at the new config", d.manifest.Config)
	}
	rec, err := field.FromConfig(r.Config)
	if err != nil || rec == nil {
		t.Fatalf("partition config has no valid record: %v", err)
	}
	d.record = rec
	return d
}

func TestImage(t *testing.T) {
	for _, mt := range []string{ocispec.MediaTypeImageManifest, partition.MediaTypeDockerManifest} {
		t.Run(mt, func(t *testing.T) {
			img := partitiontest.New(mt, 2, grid...)
			s := sel(t, "0.0.0.1--2.2.2.2")
			res, err := partition.Image(img.Manifest, mt, img.Config, s)
			if err != nil {
				t.Fatal(err)
			}
			d := decode(t, res)

			want := []digest.Digest{
				digest.FromBytes(img.Layers[0]), digest.FromBytes(img.Layers[1]),
				digest.FromBytes(img.LayerFor(field.Cell{Row: 0, Col: 0})),
				digest.FromBytes(img.LayerFor(field.Cell{Row: 0, Col: 1})),
				digest.FromBytes(img.LayerFor(field.Cell{Row: 2, Col: 2})),
			}
			var got []digest.Digest
			for _, l := range d.manifest.Layers {
				got = append(got, l.Digest)
			}
			if !slices.Equal(got, want) {
				t.Errorf("layers = %v, want %v", got, want)
			}
			if !slices.Equal(d.config.RootFS.DiffIDs, want) { // diff_ids are the blob digests in partitiontest
				t.Errorf("diff_ids = %v, want %v", d.config.RootFS.DiffIDs, want)
			}
			var comments []string
			empty := 0
			for _, h := range d.config.History {
				if h.EmptyLayer {
					empty++
					continue
				}
				comments = append(comments, h.Comment)
			}
			if wantC := []string{"", "", "2dfs allotment 0,0", "2dfs allotment 0,1", "2dfs allotment 2,2"}; !slices.Equal(comments, wantC) || empty != 1 {
				t.Errorf("history comments = %q (%d empty), want %q (1 empty)", comments, empty, wantC)
			}
			var cells []string
			for _, a := range d.record.Allotments {
				cells = append(cells, fmt.Sprintf("%s@%d", a.Cell(), a.Layer))
			}
			if wantR := []string{"0,0@2", "0,1@3", "2,2@4"}; !slices.Equal(cells, wantR) || d.record.BaseLayers != 2 {
				t.Errorf("record = %v base %d, want %v base 2", cells, d.record.BaseLayers, wantR)
			}

			labels := d.config.Config.Labels
			if labels[partition.LabelSource] != img.Digest().String() || labels[partition.LabelSelection] != "0.0.0.1--2.2.2.2" {
				t.Errorf("labels = %v", labels)
			}
			if labels["maintainer"] != "tests <&>" || !bytes.Contains(res.Config, []byte(`"maintainer":"tests \u003c\u0026\u003e"`)) {
				t.Errorf("other labels not kept verbatim: %s", res.Config)
			}
			for _, k := range []string{"container_config", "x-vendor"} {
				if _, ok := d.cfgRaw[k]; !ok {
					t.Errorf("config lost unknown field %q", k)
				}
			}
			if len(d.config.Config.Env) != 1 {
				t.Errorf("config.Env lost: %v", d.config.Config.Env)
			}

			_, hasAnn := d.raw["annotations"]
			if mt == ocispec.MediaTypeImageManifest {
				a := d.manifest.Annotations
				if a[partition.LabelSource] != img.Digest().String() || a[partition.LabelSelection] != s.String() || a["org.opencontainers.image.title"] != "handmade" {
					t.Errorf("annotations = %v", a)
				}
			} else if hasAnn {
				t.Error("Docker schema 2 manifest got annotations")
			}
			if d.manifest.MediaType != mt || res.MediaType != mt {
				t.Errorf("media type %q / %q, want %q", d.manifest.MediaType, res.MediaType, mt)
			}
		})
	}
}

func TestImageDeterministic(t *testing.T) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	a, err := partition.Image(img.Manifest, "", img.Config, sel(t, "1.0.1.1--0.0.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := partition.Image(img.Manifest, ocispec.MediaTypeImageManifest, img.Config, sel(t, "0.0.0.0--1.0.1.1--1.1.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Manifest, b.Manifest) || !bytes.Equal(a.Config, b.Config) {
		t.Error("two spellings of one selection gave different bytes")
	}
}

func TestPartitionOfPartition(t *testing.T) {
	img := partitiontest.New(partition.MediaTypeDockerManifest, 1, grid...)
	first, err := partition.Image(img.Manifest, "", img.Config, sel(t, "0.0.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := partition.Image(first.Manifest, first.MediaType, first.Config, sel(t, "1.0.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, second)
	var cells []field.Cell
	for _, a := range d.record.Allotments {
		cells = append(cells, a.Cell())
	}
	if want := []field.Cell{{Row: 1, Col: 0}, {Row: 1, Col: 1}}; !slices.Equal(cells, want) {
		t.Errorf("cells = %v, want %v", cells, want)
	}
	if len(d.manifest.Layers) != 3 || d.manifest.Layers[2].Digest != digest.FromBytes(img.LayerFor(field.Cell{Row: 1, Col: 1})) {
		t.Errorf("layers = %v", d.manifest.Layers)
	}
	if got := d.config.Config.Labels[partition.LabelSource]; got != first.ManifestDigest.String() {
		t.Errorf("source = %s, want the first partition %s", got, first.ManifestDigest)
	}
	// Partitioning directly gives the same layers (labels differ: other source).
	direct, err := partition.Image(img.Manifest, "", img.Config, sel(t, "1.0.1.1"))
	if err != nil {
		t.Fatal(err)
	}
	if dd := decode(t, direct); !slices.Equal(dd.config.RootFS.DiffIDs, d.config.RootFS.DiffIDs) {
		t.Error("partition of a partition differs from the direct partition")
	}
}

func TestImageSelectsNothing(t *testing.T) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid...)
	res, err := partition.Image(img.Manifest, "", img.Config, sel(t, "9.9.9.9"))
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, res)
	if len(d.manifest.Layers) != 2 || len(d.record.Allotments) != 0 || !bytes.Contains(res.Config, []byte(`"org.2dfs.field.allotments":[]`)) {
		t.Errorf("want base only, got %d layers, record %+v", len(d.manifest.Layers), d.record)
	}
}

func TestImageErrors(t *testing.T) {
	s := sel(t, "0.0.1.1")
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	plain := partitiontest.Plain(ocispec.MediaTypeImageManifest, 2)

	if _, err := partition.Image(plain.Manifest, "", plain.Config, s); !errors.Is(err, partition.ErrNot2DFS) {
		t.Errorf("plain image: %v, want ErrNot2DFS", err)
	}
	if _, err := partition.Image(img.Manifest, "", plain.Config, s); err == nil || !strings.Contains(err.Error(), "config digest") {
		t.Errorf("wrong config: %v", err)
	}
	big := append(img.Manifest, bytes.Repeat([]byte(" "), partition.MaxManifestBytes)...)
	if _, err := partition.Image(big, "", img.Config, s); !errors.Is(err, partition.ErrTooLarge) {
		t.Errorf("big manifest: %v", err)
	}
	if _, err := partition.Image(img.Manifest, "application/vnd.oci.image.index.v1+json", img.Config, s); !errors.Is(err, partition.ErrUnsupported) {
		t.Errorf("index as manifest: %v", err)
	}
	if _, err := partition.Image(img.Manifest, "", img.Config, field.Selection{}); err == nil {
		t.Error("zero selection accepted")
	}

	// A manifest whose layers disagree with the record.
	var m map[string]any
	_ = json.Unmarshal(img.Manifest, &m)
	m["layers"] = m["layers"].([]any)[1:]
	short, _ := json.Marshal(m)
	if _, err := partition.Image(short, "", img.Config, s); err == nil || !strings.Contains(err.Error(), "layers") {
		t.Errorf("short manifest: %v", err)
	}

	// A record gone stale: the history no longer names the allotments.
	stale := bytes.Replace(img.Config, []byte("2dfs allotment 1,0"), []byte("something else"), 1)
	m["layers"] = nil
	_ = json.Unmarshal(img.Manifest, &m)
	m["config"].(map[string]any)["digest"] = digest.FromBytes(stale)
	staleM, _ := json.Marshal(m)
	if _, err := partition.Image(staleM, "", stale, s); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("stale record: %v", err)
	}
}

func TestIndex(t *testing.T) {
	for _, tc := range []struct{ index, manifest string }{
		{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest},
		{partition.MediaTypeDockerManifestList, partition.MediaTypeDockerManifest},
	} {
		t.Run(tc.index, func(t *testing.T) {
			amd := partitiontest.New(tc.manifest, 1, grid...)
			arm := partitiontest.New(tc.manifest, 2, grid[:3]...)
			other := partitiontest.Attestation(digest.FromString("not in this index"))
			index, all := partitiontest.Index(tc.index,
				partitiontest.Platform{Image: amd, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Attest: true},
				partitiontest.Platform{Image: arm, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, Attest: true},
			)
			// Splice in an attestation of something else: it must be kept.
			var idx map[string]any
			_ = json.Unmarshal(index, &idx)
			idx["manifests"] = append(idx["manifests"].([]any), map[string]any{
				"mediaType": other.MediaType, "digest": other.Digest(), "size": len(other.Manifest),
				"annotations": map[string]string{partition.AnnotationReferenceType: partition.ReferenceTypeAttestation, partition.AnnotationReferenceDigest: digest.FromString("not in this index").String()},
			})
			index, _ = json.Marshal(idx)

			byDigest := map[digest.Digest]*partitiontest.Image{}
			for _, m := range all {
				byDigest[m.Digest()] = m
			}
			s := sel(t, "0.0.0.1")
			children := map[digest.Digest]*partition.Result{}
			for d, m := range byDigest {
				r, err := partition.Image(m.Manifest, m.MediaType, m.Config, s)
				if errors.Is(err, partition.ErrNot2DFS) {
					continue // an attestation
				}
				if err != nil {
					t.Fatal(err)
				}
				children[d] = r
			}
			res, err := partition.Index(index, "", s, children)
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != digest.FromBytes(res.Index) || res.Source != digest.FromBytes(index) || res.MediaType != tc.index {
				t.Error("result metadata wrong")
			}
			var out ocispec.Index
			var outRaw map[string]json.RawMessage
			_ = json.Unmarshal(res.Index, &out)
			_ = json.Unmarshal(res.Index, &outRaw)
			if len(out.Manifests) != 3 || len(res.Children) != 2 {
				t.Fatalf("index has %d manifests (%d children), want 2 platforms + 1 foreign attestation: %s", len(out.Manifests), len(res.Children), res.Index)
			}
			for i, want := range []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}} {
				e := out.Manifests[i]
				if e.Platform == nil || e.Platform.Architecture != want.Architecture || e.Platform.Variant != want.Variant {
					t.Errorf("manifests[%d] platform = %v, want %v", i, e.Platform, want)
				}
				if e.Digest != res.Children[i].ManifestDigest || e.Size != int64(len(res.Children[i].Manifest)) {
					t.Errorf("manifests[%d] does not point at its partition", i)
				}
			}
			if out.Manifests[2].Digest != other.Digest() {
				t.Errorf("foreign attestation not kept: %v", out.Manifests[2])
			}
			_, hasAnn := outRaw["annotations"]
			if tc.index == ocispec.MediaTypeImageIndex {
				if out.Annotations[partition.LabelSource] != res.Source.String() || out.Annotations["org.opencontainers.image.created"] == "" {
					t.Errorf("index annotations = %v", out.Annotations)
				}
			} else if hasAnn {
				t.Error("Docker manifest list got annotations")
			}

			again, err := partition.Index(index, tc.index, s, children)
			if err != nil || !bytes.Equal(again.Index, res.Index) {
				t.Error("index partition is not deterministic")
			}
		})
	}
}

func TestIndexErrors(t *testing.T) {
	s := sel(t, "0.0.0.0")
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	index, _ := partitiontest.Index(ocispec.MediaTypeImageIndex, partitiontest.Platform{Image: img})
	if _, err := partition.Index(index, "", s, nil); err == nil || !strings.Contains(err.Error(), "has no partition") {
		t.Errorf("a child without its partition: %v", err)
	}

	nested := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":1}]}`,
		ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageIndex, digest.FromString("x"))
	if _, err := partition.Index(nested, "", s, nil); !errors.Is(err, partition.ErrUnsupported) {
		t.Errorf("nested index: %v", err)
	}
	onlyAtt, _ := partitiontest.Index(ocispec.MediaTypeImageIndex)
	if _, err := partition.Index(onlyAtt, "", s, nil); !errors.Is(err, partition.ErrNot2DFS) {
		t.Errorf("empty index: %v", err)
	}
}

func FuzzImage(f *testing.F) {
	for _, mt := range []string{ocispec.MediaTypeImageManifest, partition.MediaTypeDockerManifest} {
		img := partitiontest.New(mt, 2, grid...)
		f.Add(img.Manifest, img.Config, "0.0.1.1")
		f.Add(img.Manifest, img.Config, "2.2.2.2--0.1.0.1")
		plain := partitiontest.Plain(mt, 1)
		f.Add(plain.Manifest, plain.Config, "0.0.0.0")
	}
	f.Fuzz(func(t *testing.T, manifest, config []byte, selection string) {
		_, s, err := field.ParseTag("t--" + selection)
		if err != nil {
			return
		}
		// Point the manifest at the fuzzed config, or almost every input
		// stops at the config digest check.
		var probe map[string]any
		if json.Unmarshal(manifest, &probe) == nil && probe != nil {
			if c, ok := probe["config"].(map[string]any); ok {
				c["digest"] = digest.FromBytes(config)
				manifest, _ = json.Marshal(probe)
			}
		}
		res, err := partition.Image(manifest, "", config, s)
		if err != nil {
			return
		}
		again, err := partition.Image(manifest, "", config, s)
		if err != nil || !bytes.Equal(again.Manifest, res.Manifest) || !bytes.Equal(again.Config, res.Config) {
			t.Fatal("not deterministic")
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(res.Manifest, &m); err != nil {
			t.Fatalf("output manifest does not parse: %v", err)
		}
		var c ocispec.Image
		if err := json.Unmarshal(res.Config, &c); err != nil {
			t.Fatalf("output config does not parse: %v", err)
		}
		rec, err := field.FromConfig(res.Config)
		if err != nil || rec == nil {
			t.Fatalf("output record invalid: %v", err)
		}
		if len(m.Layers) != len(c.RootFS.DiffIDs) || m.Config.Digest != res.ConfigDigest {
			t.Fatalf("output manifest and config disagree")
		}
		for _, a := range rec.Allotments {
			if !s.Contains(a.Cell()) {
				t.Fatalf("partition holds unselected cell %s", a.Cell())
			}
		}
		// Partitioning the partition with the same selection keeps every layer.
		twice, err := partition.Image(res.Manifest, res.MediaType, res.Config, s)
		if err != nil {
			t.Fatalf("partition of partition: %v", err)
		}
		var m2 ocispec.Manifest
		_ = json.Unmarshal(twice.Manifest, &m2)
		if len(m2.Layers) != len(m.Layers) {
			t.Fatalf("re-partitioning dropped layers")
		}
	})
}

func FuzzIndex(f *testing.F) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	for _, mt := range []string{ocispec.MediaTypeImageIndex, partition.MediaTypeDockerManifestList} {
		index, _ := partitiontest.Index(mt, partitiontest.Platform{Image: img, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Attest: true})
		f.Add(index, "0.0.1.1")
	}
	f.Fuzz(func(t *testing.T, index []byte, selection string) {
		_, s, err := field.ParseTag("t--" + selection)
		if err != nil {
			return
		}
		var in ocispec.Index
		if json.Unmarshal(index, &in) != nil {
			return
		}
		replaced := map[digest.Digest]bool{}
		children := map[digest.Digest]*partition.Result{}
		for _, d := range in.Manifests {
			r, err := partition.Image(img.Manifest, "", img.Config, s)
			if err != nil {
				return
			}
			r.MediaType = d.MediaType // whatever the fuzzed index claims
			replaced[d.Digest] = true
			children[d.Digest] = r
		}
		res, err := partition.Index(index, "", s, children)
		if err != nil {
			return
		}
		again, err := partition.Index(index, "", s, children)
		if err != nil || !bytes.Equal(again.Index, res.Index) {
			t.Fatal("not deterministic")
		}
		var out ocispec.Index
		if err := json.Unmarshal(res.Index, &out); err != nil {
			t.Fatalf("output index does not parse: %v", err)
		}
		for _, m := range out.Manifests {
			if m.Annotations[partition.AnnotationReferenceType] == partition.ReferenceTypeAttestation &&
				replaced[digest.Digest(m.Annotations[partition.AnnotationReferenceDigest])] {
				t.Fatalf("attestation of a replaced manifest kept")
			}
		}
	})
}

// Images built before record version 2 keep the whole record in the label.
// Their partitions are written as version 2: the label shrinks to the
// header, the allotments move to the top-level key, and the result is the
// same bytes as the partition of the same image built with version 2.
func TestImageVersion1Source(t *testing.T) {
	v1 := partitiontest.NewV1(ocispec.MediaTypeImageManifest, 2, grid...)
	if !bytes.Contains(v1.Config, []byte(`\"version\":1`)) || bytes.Contains(v1.Config, []byte(field.ConfigKey)) {
		t.Fatalf("the source is not a version 1 image: %s", v1.Config)
	}
	res, err := partition.Image(v1.Manifest, "", v1.Config, sel(t, "0.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, res)
	if d.record.Version != 2 || len(d.record.Allotments) != 2 || len(d.manifest.Layers) != 4 {
		t.Fatalf("partition record %+v, %d layers", d.record, len(d.manifest.Layers))
	}
	if got := d.config.Config.Labels[field.LabelKey]; got != `{"version":2,"baseLayers":2,"allotments":2}` {
		t.Errorf("label = %s", got)
	}
	if got := string(d.cfgRaw[field.ConfigKey]); got != `[{"row":0,"col":0,"dst":["/data/0/0"]},{"row":0,"col":1,"dst":["/data/0/1"]}]` {
		t.Errorf("%s = %s", field.ConfigKey, got)
	}
	// The rewrite is the one a version 2 source gets.
	v2 := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid...)
	want, err := partition.Image(v2.Manifest, "", v2.Config, sel(t, "0.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	// The source label names each one's own manifest.
	wantConfig := bytes.Replace(want.Config, []byte(want.Source.String()), []byte(res.Source.String()), 1)
	if !bytes.Equal(res.Config, wantConfig) {
		t.Errorf("config of the v1 partition\n%s\ndiffers from the v2 one\n%s", res.Config, want.Config)
	}
}
