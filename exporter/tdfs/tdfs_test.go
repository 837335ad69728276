package tdfs_test

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
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// sel parses a selection; shared with the other rewriter tests.
var sel = partitiontest.Selection

func hex(s string) string { return digest.FromString(s).Encoded() }

var grid = []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}, {Row: 2, Col: 2}}

// sizes answers blob sizes from a set of blobs, like a registry would.
func sizes(blobs ...[]byte) tdfs.SizeFunc {
	m := map[digest.Digest]int64{}
	for _, b := range blobs {
		m[digest.FromBytes(b)] = int64(len(b))
	}
	return func(d digest.Digest) (int64, error) {
		n, ok := m[d]
		if !ok {
			return 0, fmt.Errorf("blob %s not found", d)
		}
		return n, nil
	}
}

type view struct {
	manifest ocispec.Manifest
	config   ocispec.Image
}

func decode(t *testing.T, manifest, config []byte) view {
	t.Helper()
	var v view
	if err := json.Unmarshal(manifest, &v.manifest); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(config, &v.config); err != nil {
		t.Fatal(err)
	}
	if v.manifest.Config.Digest != digest.FromBytes(config) || v.manifest.Config.Size != int64(len(config)) {
		t.Fatalf("manifest config descriptor %v does not point at the config", v.manifest.Config)
	}
	return v
}

func layerDigests(m ocispec.Manifest) []digest.Digest {
	var out []digest.Digest
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func TestFromImageLayout(t *testing.T) {
	for _, mt := range []string{ocispec.MediaTypeImageManifest, partition.MediaTypeDockerManifest} {
		t.Run(mt, func(t *testing.T) {
			img := partitiontest.New(mt, 2, grid...)
			ref, err := tdfs.FromImage(img.Manifest, "", img.Config)
			if err != nil {
				t.Fatal(err)
			}
			v := decode(t, ref.Manifest, ref.Config)
			if v.manifest.MediaType != ocispec.MediaTypeImageManifest || v.manifest.Config.MediaType != ocispec.MediaTypeImageConfig {
				t.Errorf("media types %q / %q, want OCI", v.manifest.MediaType, v.manifest.Config.MediaType)
			}
			if len(v.manifest.Layers) != 3 {
				t.Fatalf("%d layers, want 2 base + field", len(v.manifest.Layers))
			}
			for i, l := range v.manifest.Layers[:2] {
				if l.Digest != digest.FromBytes(img.Layers[i]) || l.MediaType != ocispec.MediaTypeImageLayerGzip {
					t.Errorf("base layer %d is %v", i, l)
				}
			}
			if got := v.manifest.Layers[2]; got.MediaType != tdfs.MediaTypeField || got.Size != int64(len(ref.FieldBlob)) || got.Digest != digest.FromBytes(ref.FieldBlob) {
				t.Errorf("last layer %v, want the field %v", got, ref.FieldDescriptor())
			}
			if len(v.config.RootFS.DiffIDs) != 2 {
				t.Errorf("diff_ids %v, want the 2 base layers", v.config.RootFS.DiffIDs)
			}
			if _, ok := v.config.Config.Labels[field.LabelKey]; ok {
				t.Error("reference config still has the (now stale) field record")
			}
			if v.config.Config.Labels["maintainer"] != "tests <&>" {
				t.Error("other labels lost")
			}
			if !bytes.Contains(ref.Config, []byte(`"container_config"`)) || !bytes.Contains(ref.Config, []byte(`"x-vendor"`)) {
				t.Error("unknown config fields lost")
			}
			layerEntries := 0
			for _, h := range v.config.History {
				if !h.EmptyLayer {
					layerEntries++
				}
			}
			if layerEntries != 2 || len(v.config.History) != 2+1+len(grid) {
				t.Errorf("history %+v: want all entries kept, 2 with layers", v.config.History)
			}

			f, err := tdfs.ParseField(ref.FieldBlob)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range grid {
				a := f.Entries[i]
				layer := img.LayerFor(c)
				if a.Cell() != c || a.Digest != digest.FromBytes(layer) || a.DiffID != digest.FromBytes(layer) {
					t.Errorf("field cell %d is %+v, want %s with the layer's digests", i, a, c)
				}
			}
			paths, err := tdfs.Paths(&v.config)
			if err != nil || len(paths) != len(grid) || paths[field.Cell{Row: 2, Col: 2}][0] != "/data/2/2" {
				t.Errorf("paths %v, %v", paths, err)
			}

			again, err := tdfs.FromImage(img.Manifest, mt, img.Config)
			if err != nil || !bytes.Equal(again.Manifest, ref.Manifest) || !bytes.Equal(again.Config, ref.Config) || !bytes.Equal(again.FieldBlob, ref.FieldBlob) {
				t.Error("conversion is not deterministic")
			}
		})
	}
}

// The round trip: a partition of the converted image has the same layers,
// diff_ids, history and record as the partition of our image.
func TestRoundTripPartition(t *testing.T) {
	for _, mt := range []string{ocispec.MediaTypeImageManifest, partition.MediaTypeDockerManifest} {
		img := partitiontest.New(mt, 2, grid...)
		ref, err := tdfs.FromImage(img.Manifest, mt, img.Config)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"0.0.0.0", "0.0.1.1", "1.0.2.2--0.1.0.1", "5.5.6.6", "0.0.1023.1023"} {
			t.Run(mt+"/"+s, func(t *testing.T) {
				want, err := partition.Image(img.Manifest, mt, img.Config, sel(t, s))
				if err != nil {
					t.Fatal(err)
				}
				got, err := tdfs.Partition(ref.Manifest, ref.FieldBlob, ref.Config, sel(t, s), sizes(img.Layers...))
				if err != nil {
					t.Fatal(err)
				}
				if got.ManifestDigest != digest.FromBytes(got.Manifest) || got.ConfigDigest != digest.FromBytes(got.Config) {
					t.Fatal("result digests do not match the bytes")
				}
				w, g := decode(t, want.Manifest, want.Config), decode(t, got.Manifest, got.Config)
				if !slices.Equal(layerDigests(g.manifest), layerDigests(w.manifest)) {
					t.Errorf("layers %v, want %v", layerDigests(g.manifest), layerDigests(w.manifest))
				}
				for i, l := range g.manifest.Layers {
					if l.Size != w.manifest.Layers[i].Size {
						t.Errorf("layer %d size %d, want %d", i, l.Size, w.manifest.Layers[i].Size)
					}
					if l.MediaType != ocispec.MediaTypeImageLayerGzip {
						t.Errorf("layer %d media type %q", i, l.MediaType)
					}
				}
				if !slices.Equal(g.config.RootFS.DiffIDs, w.config.RootFS.DiffIDs) {
					t.Errorf("diff_ids %v, want %v", g.config.RootFS.DiffIDs, w.config.RootFS.DiffIDs)
				}
				if fmt.Sprint(g.config.History) != fmt.Sprint(w.config.History) {
					t.Errorf("history\n%+v\nwant\n%+v", g.config.History, w.config.History)
				}
				rec, err := field.FromConfig(got.Config)
				if err != nil || rec == nil {
					t.Fatalf("partition has no valid record: %v", err)
				}
				if fmt.Sprint(rec) != fmt.Sprint(want.Record) || fmt.Sprint(got.Record) != fmt.Sprint(want.Record) {
					t.Errorf("record %+v, want %+v", rec, want.Record)
				}
				if g.config.Config.Labels[partition.LabelSelection] != sel(t, s).String() ||
					g.config.Config.Labels[partition.LabelSource] != digest.FromBytes(ref.Manifest).String() ||
					g.manifest.Annotations[partition.LabelSelection] != sel(t, s).String() {
					t.Error("source and selection not recorded")
				}
				if _, ok := g.config.Config.Labels[tdfs.LabelPaths]; ok {
					t.Error("paths label left next to the record")
				}
				// The partition is one of our images: it partitions again.
				if _, err := partition.Image(got.Manifest, got.MediaType, got.Config, sel(t, "0.0.0.0")); err != nil {
					t.Errorf("partition of the partition: %v", err)
				}
			})
		}
	}
}

// referenceImage builds an image the way the reference builder does: the
// base manifest and config untouched, the field layer appended.
func referenceImage(t *testing.T, fieldBlob []byte) (manifest, config []byte, base [][]byte) {
	t.Helper()
	base = [][]byte{[]byte("ubuntu layer 0"), []byte("ubuntu layer 1")}
	cfg := map[string]any{
		"architecture": "arm64", "os": "linux", "created": "2025-01-01T00:00:00Z",
		"config":  map[string]any{"Cmd": []string{"/bin/bash"}},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []digest.Digest{digest.FromString("diff 0"), digest.FromString("diff 1")}},
		"history": []map[string]any{{"created_by": "ADD rootfs"}, {"created_by": "CMD", "empty_layer": true}, {"created_by": "RUN apt"}},
	}
	config, _ = json.Marshal(cfg)
	var layers []ocispec.Descriptor
	for _, b := range base {
		layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(len(b))})
	}
	layers = append(layers, ocispec.Descriptor{MediaType: tdfs.MediaTypeField, Digest: digest.FromBytes(fieldBlob), Size: int64(len(fieldBlob))})
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))}, Layers: layers}
	m.SchemaVersion = 2
	manifest, _ = json.Marshal(m)
	return manifest, config, base
}

// A field as the reference builder writes it: a hole at (0,1), an empty
// row 1, a ragged row 2.
func referenceFieldJSON(a, b, c string) string {
	return `{"rows":[{"allotments":[{"row":0,"col":0,"digest":"` + hex(a) + `","diffid":"` + hex(a+"-diff") + `"},` +
		`{"row":0,"col":1,"digest":"","diffid":""},` +
		`{"row":0,"col":2,"digest":"` + hex(b) + `","diffid":"` + hex(b+"-diff") + `"}],"allotments_size":3},` +
		`{"allotments":[],"allotments_size":0},` +
		`{"allotments":[{"row":2,"col":0,"digest":"` + hex(c) + `","diffid":"` + hex(c+"-diff") + `"}],"allotments_size":1}],` +
		`"rows_size":3,"owner":""}`
}

func TestFieldWithHolesRoundTrips(t *testing.T) {
	blob := referenceFieldJSON("a", "b", "c")
	f, err := tdfs.ParseField([]byte(blob))
	if err != nil {
		t.Fatal(err)
	}
	want := []tdfs.Entry{
		{Row: 0, Col: 0, Digest: digest.FromString("a"), DiffID: digest.FromString("a-diff")},
		{Row: 0, Col: 2, Digest: digest.FromString("b"), DiffID: digest.FromString("b-diff")},
		{Row: 2, Col: 0, Digest: digest.FromString("c"), DiffID: digest.FromString("c-diff")},
	}
	if !slices.Equal(f.Entries, want) {
		t.Fatalf("allotments %+v, want %+v", f.Entries, want)
	}
	if got := string(f.Encode()); got != blob {
		t.Errorf("Encode is not the reference layout:\n%s\nwant\n%s", got, blob)
	}
	if r, c := f.Size(); r != 3 || c != 3 {
		t.Errorf("Size %d×%d, want 3×3", r, c)
	}
	if _, ok := f.Lookup(field.Cell{Row: 0, Col: 1}); ok {
		t.Error("Lookup found the hole")
	}
	if a, ok := f.Lookup(field.Cell{Row: 2, Col: 0}); !ok || a != want[2] {
		t.Errorf("Lookup(2,0) = %v, %v", a, ok)
	}
}

func TestSparseField(t *testing.T) {
	f, err := tdfs.NewField([]tdfs.Entry{
		{Row: 3, Col: 0, Digest: digest.FromString("x"), DiffID: digest.FromString("y")},
		{Row: 0, Col: 5, Digest: digest.FromString("z"), DiffID: digest.FromString("w")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Rows []struct {
			Allotments []struct{ Digest string } `json:"allotments"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(f.Encode(), &w); err != nil {
		t.Fatal(err)
	}
	lens := []int{}
	for _, r := range w.Rows {
		lens = append(lens, len(r.Allotments))
	}
	if !slices.Equal(lens, []int{6, 0, 0, 1}) {
		t.Errorf("row lengths %v, want [6 0 0 1]", lens)
	}
	back, err := tdfs.ParseField(f.Encode())
	if err != nil || !slices.Equal(back.Entries, f.Entries) {
		t.Errorf("parse of encode: %+v, %v", back, err)
	}
	if empty, _ := tdfs.NewField(nil); string(empty.Encode()) != `{"rows":[],"rows_size":0,"owner":""}` {
		t.Errorf("empty field encodes as %s", empty.Encode())
	}
}

func TestPartitionReferenceBuiltImage(t *testing.T) {
	a, b, c := []byte("allotment a"), []byte("allotment b"), []byte("allotment c")
	blob := []byte(strings.NewReplacer(hex("a"), digest.FromBytes(a).Encoded(), hex("b"), digest.FromBytes(b).Encoded(), hex("c"), digest.FromBytes(c).Encoded()).
		Replace(referenceFieldJSON("a", "b", "c")))
	manifest, config, base := referenceImage(t, blob)
	if !tdfs.IsReference(manifest) {
		t.Fatal("IsReference is false")
	}
	res, err := tdfs.Partition(manifest, blob, config, sel(t, "0.0.0.2--0.0.0.0"), sizes(append(base, a, b, c)...))
	if err != nil {
		t.Fatal(err)
	}
	v := decode(t, res.Manifest, res.Config)
	want := []digest.Digest{digest.FromBytes(base[0]), digest.FromBytes(base[1]), digest.FromBytes(a), digest.FromBytes(b)}
	if !slices.Equal(layerDigests(v.manifest), want) {
		t.Errorf("layers %v, want base + (0,0) + (0,2), each once", layerDigests(v.manifest))
	}
	if v.manifest.Layers[3].Size != int64(len(b)) {
		t.Errorf("size of (0,2) is %d", v.manifest.Layers[3].Size)
	}
	wantIDs := []digest.Digest{digest.FromString("diff 0"), digest.FromString("diff 1"), digest.FromString("a-diff"), digest.FromString("b-diff")}
	if !slices.Equal(v.config.RootFS.DiffIDs, wantIDs) {
		t.Errorf("diff_ids %v, want %v", v.config.RootFS.DiffIDs, wantIDs)
	}
	var comments []string
	layerEntries := 0
	for _, h := range v.config.History {
		if !h.EmptyLayer {
			layerEntries++
			comments = append(comments, h.Comment)
		}
	}
	if layerEntries != 4 || comments[2] != "2dfs allotment 0,0" || comments[3] != "2dfs allotment 0,2" {
		t.Errorf("history %+v does not match the layers", v.config.History)
	}
	if res.Record != nil {
		t.Error("record written without paths")
	}
	if v.config.Config.Labels[partition.LabelSelection] != "0.0.0.2" {
		t.Errorf("selection label %q", v.config.Config.Labels[partition.LabelSelection])
	}

	// A Docker-typed manifest (a wrapped Docker base) partitions to OCI.
	docker := bytes.Replace(manifest, []byte(`"mediaType":"`+ocispec.MediaTypeImageManifest+`"`), []byte(`"mediaType":"`+partition.MediaTypeDockerManifest+`"`), 1)
	docker = bytes.ReplaceAll(docker, []byte(ocispec.MediaTypeImageLayerGzip), []byte("application/vnd.docker.image.rootfs.diff.tar.gzip"))
	dres, err := tdfs.Partition(docker, blob, config, sel(t, "0.0.0.0"), sizes(append(base, a, b, c)...))
	if err != nil {
		t.Fatal(err)
	}
	dv := decode(t, dres.Manifest, dres.Config)
	if dv.manifest.MediaType != ocispec.MediaTypeImageManifest || dv.manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip || len(dv.manifest.Layers) != 3 {
		t.Errorf("partition of a Docker-typed reference manifest: %s", dres.Manifest)
	}

	// The allotment blob is missing from the registry.
	_, err = tdfs.Partition(manifest, blob, config, sel(t, "2.0.2.0"), sizes(base...))
	if err == nil || !strings.Contains(err.Error(), "allotment 2,0") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing blob: %v", err)
	}
}

func TestPartitionMismatches(t *testing.T) {
	blob := []byte(referenceFieldJSON("a", "b", "c"))
	manifest, config, _ := referenceImage(t, blob)
	any := func(digest.Digest) (int64, error) { return 1, nil }
	cases := map[string]struct {
		manifest, field, config []byte
		want                    string
	}{
		"field blob altered": {manifest, bytes.Replace(blob, []byte(`"owner":""`), []byte(`"owner":"x"`), 1), config, "field blob does not match its digest"},
		"config altered":     {manifest, blob, append(slices.Clone(config), ' '), "config does not match its digest"},
		"no field layer":     {bytes.ReplaceAll(manifest, []byte(tdfs.MediaTypeField), []byte(ocispec.MediaTypeImageLayerGzip)), blob, config, "no application/vnd.oci.image.layer.v1.2dfs.field layer"},
		"an index":           {[]byte(`{"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[]}`), blob, config, "reference-format images are image manifests"},
		"diff_ids past base": {manifest, blob, nil, "3 diff_ids for 2 base layers"},
	}
	// A config whose diff_ids include an allotment.
	extra := bytes.Replace(config, []byte(`"diff_ids":[`), []byte(`"diff_ids":["`+digest.FromString("x").String()+`",`), 1)
	m2, _, _ := referenceImage(t, blob)
	m2 = bytes.Replace(m2, []byte(digest.FromBytes(config).String()), []byte(digest.FromBytes(extra).String()), 1)
	m2 = bytes.Replace(m2, []byte(fmt.Sprintf(`"size":%d`, len(config))), []byte(fmt.Sprintf(`"size":%d`, len(extra))), 1)
	cases["diff_ids past base"] = struct {
		manifest, field, config []byte
		want                    string
	}{m2, blob, extra, "3 diff_ids for 2 base layers"}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := tdfs.Partition(c.manifest, c.field, c.config, sel(t, "0.0.9.9"), any)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestMalformedField(t *testing.T) {
	good := referenceFieldJSON("a", "b", "c")
	h := hex("a")
	cell := func(digest, diffid string) string {
		return `{"rows":[{"allotments":[{"row":0,"col":0,"digest":"` + digest + `","diffid":"` + diffid + `"}],"allotments_size":1}],"rows_size":1,"owner":""}`
	}
	cases := map[string]struct{ blob, want string }{
		"not JSON":          {`{"rows":[`, "not valid field JSON"},
		"not an object":     {`[]`, "not valid field JSON"},
		"trailing data":     {good + `}`, "trailing data"},
		"no rows":           {`{"rows_size":0,"owner":""}`, `no "rows" array`},
		"unknown key":       {strings.Replace(good, `"diffid"`, `"diff_id"`, 1), `unknown field "diff_id"`},
		"prefixed digest":   {cell("sha256:"+h, h), "sha256: prefix"},
		"short digest":      {cell(h[:10], h), "not a sha256 hex digest"},
		"upper-case digest": {cell(strings.ToUpper(h), h), "not a sha256 hex digest"},
		"digest, no diffid": {cell(h, ""), "diffid: empty"},
		"diffid, no digest": {cell("", h), "digest: empty"},
		"rows_size wrong":   {strings.Replace(good, `"rows_size":3`, `"rows_size":2`, 1), "rows_size is 2 but there are 3 rows"},
		"allotments_size":   {strings.Replace(good, `"allotments_size":3`, `"allotments_size":4`, 1), "rows[0]: allotments_size is 4"},
		"cell out of place": {strings.Replace(good, `"row":2,"col":0`, `"row":2,"col":1`, 1), "rows[2].allotments[0] says row 2, col 1"},
		"too large":         {`{"rows":[],"owner":"` + strings.Repeat("x", tdfs.MaxFieldBytes) + `"}`, "over the"},
		"row as wrong type": {`{"rows":[{"allotments":{}}],"rows_size":1,"owner":""}`, "not valid field JSON"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := tdfs.ParseField([]byte(c.blob))
			if !errors.Is(err, tdfs.ErrMalformedField) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want ErrMalformedField containing %q", err, c.want)
			}
		})
	}
}

func TestFromImageErrors(t *testing.T) {
	plain := partitiontest.Plain(ocispec.MediaTypeImageManifest, 2)
	if _, err := tdfs.FromImage(plain.Manifest, "", plain.Config); !errors.Is(err, partition.ErrNot2DFS) {
		t.Errorf("plain image: %v", err)
	}
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	zstd := bytes.ReplaceAll(img.Manifest, []byte(ocispec.MediaTypeImageLayerGzip), []byte("application/vnd.oci.image.layer.v1.tar+zstd"))
	if _, err := tdfs.FromImage(zstd, "", img.Config); !errors.Is(err, tdfs.ErrNotGzip) || !strings.Contains(err.Error(), "allotment 0,0") {
		t.Errorf("zstd allotments: %v", err)
	}
	if _, err := tdfs.FromImage(img.Manifest, "", append(slices.Clone(img.Config), ' ')); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("config mismatch: %v", err)
	}
}

func TestFromIndex(t *testing.T) {
	amd := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	arm := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid[:2]...)
	index, images := partitiontest.Index(ocispec.MediaTypeImageIndex,
		partitiontest.Platform{Image: amd, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Attest: true},
		partitiontest.Platform{Image: arm, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	byDigest := map[digest.Digest]*partitiontest.Image{}
	for _, i := range images {
		byDigest[i.Digest()] = i
	}
	children := map[digest.Digest]*tdfs.Image{}
	for d, i := range byDigest {
		if i.MediaType != ocispec.MediaTypeImageManifest || i.Config == nil {
			continue
		}
		img, err := tdfs.FromImage(i.Manifest, i.MediaType, i.Config)
		if err != nil {
			continue // the attestations are no field images
		}
		children[d] = img
	}
	res, err := tdfs.FromIndex(index, "", "registry.example/m:v1", children)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(res.Index, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex || idx.Annotations[tdfs.AnnotationImageName] != "registry.example/m:v1" || idx.Annotations["org.opencontainers.image.created"] == "" {
		t.Errorf("index media type / annotations: %q %v", idx.MediaType, idx.Annotations)
	}
	if len(idx.Manifests) != 2 || len(res.Children) != 2 {
		t.Fatalf("%d entries, want 2 (attestation dropped)", len(idx.Manifests))
	}
	for i, e := range idx.Manifests {
		if e.Digest != res.Children[i].ManifestDigest || e.Platform == nil || e.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	if idx.Manifests[1].Platform.Architecture != "arm64" {
		t.Error("platform lost")
	}

	wrapped := tdfs.WrapIndex("r/m:v1", res.Children[0])
	if err := json.Unmarshal(wrapped.Index, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Platform.Architecture != "amd64" || idx.Annotations[tdfs.AnnotationImageName] != "r/m:v1" || wrapped.Digest != digest.FromBytes(wrapped.Index) {
		t.Errorf("wrapped index %s", wrapped.Index)
	}
}
