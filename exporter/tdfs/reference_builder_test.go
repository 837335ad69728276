package tdfs_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// The layouts under testdata/reference-builder were written by the reference
// builder itself (see its README.md); these tests check our codec against
// what that tool really writes, not against our reading of its sources.
const refDir = "testdata/reference-builder"

// refLayout is one OCI layout directory the reference builder exported.
type refLayout struct {
	t   *testing.T
	dir string
}

func openRef(t *testing.T, name string) refLayout {
	t.Helper()
	return refLayout{t, filepath.Join(refDir, name)}
}

// blob reads a blob and checks it against its digest: the test data must
// be what the builder wrote.
func (l refLayout) blob(d digest.Digest) []byte {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded()))
	if err != nil {
		l.t.Fatal(err)
	}
	if digest.FromBytes(b) != d {
		l.t.Fatalf("%s: blob %s does not match its digest", l.dir, d)
	}
	return b
}

func (l refLayout) size(d digest.Digest) (int64, error) {
	fi, err := os.Stat(filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded()))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errors.New("blob is missing from the layout")
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// image returns the layout's only image: its index.json is the builder's
// image index, one linux/amd64 manifest.
func (l refLayout) image() (manifest []byte, index ocispec.Index) {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, "index.json"))
	if err != nil {
		l.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &index); err != nil {
		l.t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		l.t.Fatalf("%s: %d manifests in index.json, want 1", l.dir, len(index.Manifests))
	}
	return l.blob(index.Manifests[0].Digest), index
}

// refCell is what the README says each allotment holds.
type refCell struct {
	cell  field.Cell
	files map[string]int64 // tar entry name -> size
	size  int64            // gzip blob bytes
}

var refCells = []refCell{
	{field.Cell{Row: 0, Col: 0}, map[string]int64{"/data/a.txt": 14}, 126},
	{field.Cell{Row: 0, Col: 1}, map[string]int64{"/data/b.txt": 1092}, 603},
	{field.Cell{Row: 1, Col: 0}, map[string]int64{"/data/e.txt": 14}, 127},
	{field.Cell{Row: 1, Col: 1}, map[string]int64{"/data/c1.txt": 25, "/data/c2.txt": 1005}, 496},
	{field.Cell{Row: 2, Col: 0}, map[string]int64{"/data/d.txt": 8893}, 2124},
}

func TestReferenceBuilderImage(t *testing.T) {
	l := openRef(t, "field")
	manifest, index := l.image()

	if index.MediaType != ocispec.MediaTypeImageIndex || index.Annotations[tdfs.AnnotationImageName] != "127.0.0.1:36403/tdfs/field:v1" {
		t.Errorf("index: media type %q, annotations %v", index.MediaType, index.Annotations)
	}
	if p := index.Manifests[0].Platform; p == nil || p.OS != "linux" || p.Architecture != "amd64" {
		t.Errorf("index entry platform %v, want linux/amd64", p)
	}
	if !tdfs.IsReference(manifest) {
		t.Fatal("IsReference is false for the reference builder's manifest")
	}
	m, err := tdfs.ParseManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Base) != 1 || m.Base[0].MediaType != ocispec.MediaTypeImageLayerGzip || m.Base[0].Size != 185 {
		t.Errorf("base layers %+v, want the one 185-byte gzip base layer", m.Base)
	}
	if m.Field.MediaType != tdfs.MediaTypeField || m.Field.Size != 996 {
		t.Errorf("field layer %+v, want %s of 996 bytes", m.Field, tdfs.MediaTypeField)
	}

	// The config is the base's, unchanged: diff_ids cover the base only.
	var cfg ocispec.Image
	if err := json.Unmarshal(l.blob(m.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config diff_ids %v, want the base layer's only", cfg.RootFS.DiffIDs)
	}
	if paths, err := tdfs.Paths(&cfg); err != nil || paths != nil {
		t.Errorf("Paths = %v, %v; the reference builder writes no paths label", paths, err)
	}

	fieldBlob := l.blob(m.Field.Digest)
	f, err := m.ReadField(fieldBlob)
	if err != nil {
		t.Fatal(err)
	}
	if rows, cols := f.Size(); rows != 3 || cols != 2 {
		t.Errorf("field extent %d×%d, want 3×2", rows, cols)
	}
	if len(f.Entries) != len(refCells) {
		t.Fatalf("%d allotments, want %d", len(f.Entries), len(refCells))
	}
	for i, want := range refCells {
		a := f.Entries[i]
		if a.Cell() != want.cell {
			t.Errorf("allotment %d is cell %s, want %s (row-major)", i, a.Cell(), want.cell)
			continue
		}
		// The field names the gzip blob by digest and the tar by diff_id:
		// check both against the blob's bytes, and the tar against the
		// files the README says the builder put there.
		blob := l.blob(a.Digest)
		if int64(len(blob)) != want.size {
			t.Errorf("cell %s: blob is %d bytes, want %d", a.Cell(), len(blob), want.size)
		}
		tarball := gunzip(t, blob)
		if got := digest.FromBytes(tarball); got != a.DiffID {
			t.Errorf("cell %s: diffid %s, but the blob's tar is %s", a.Cell(), a.DiffID, got)
		}
		if got := tarEntries(t, tarball); !maps.Equal(got, want.files) {
			t.Errorf("cell %s: tar holds %v, want %v", a.Cell(), got, want.files)
		}
	}

	// Writing the cells back gives the builder's bytes: what we export is
	// what the reference builder would have written.
	if enc := f.Encode(); !bytes.Equal(enc, fieldBlob) {
		t.Errorf("Encode differs from the reference builder's field blob:\n got %s\nwant %s", enc, fieldBlob)
	}
}

// TestReferenceBuilderPartition cuts partitions of the reference builder's
// image and compares them with the partitions the builder itself exported
// for the same tags: same layers and diff_ids in the same order.
func TestReferenceBuilderPartition(t *testing.T) {
	l := openRef(t, "field")
	manifest, _ := l.image()
	m, err := tdfs.ParseManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	fieldBlob, config := l.blob(m.Field.Digest), l.blob(m.Config.Digest)
	f, err := m.ReadField(fieldBlob)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		tag   string
		cells []field.Cell
	}{
		{"v1--0.0.1.1", []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 0}, {Row: 1, Col: 1}}},
		{"v1--1.0.2.0", []field.Cell{{Row: 1, Col: 0}, {Row: 2, Col: 0}}},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			_, sel, err := field.ParseTag(tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			res, err := tdfs.Partition(manifest, fieldBlob, config, sel, l.size)
			if err != nil {
				t.Fatal(err)
			}
			var got ocispec.Manifest
			var gotCfg ocispec.Image
			if err := json.Unmarshal(res.Manifest, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(res.Config, &gotCfg); err != nil {
				t.Fatal(err)
			}

			// Exactly the base layer, then the selected allotments.
			want := []ocispec.Descriptor{m.Base[0]}
			wantIDs := []digest.Digest{}
			for _, c := range tc.cells {
				a, ok := f.Lookup(c)
				if !ok {
					t.Fatalf("cell %s not in the field", c)
				}
				want = append(want, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: a.Digest, Size: int64(len(l.blob(a.Digest)))})
				wantIDs = append(wantIDs, a.DiffID)
			}
			if !slices.EqualFunc(got.Layers, want, sameLayer) {
				t.Errorf("layers %v\nwant %v", got.Layers, want)
			}
			if ids := gotCfg.RootFS.DiffIDs; len(ids) != len(want) || !slices.Equal(ids[1:], wantIDs) {
				t.Errorf("diff_ids %v, want the base's then %v", ids, wantIDs)
			}
			if len(gotCfg.History) != len(want) {
				t.Errorf("%d history entries for %d layers", len(gotCfg.History), len(want))
			}

			// The reference builder's own partition of the same tag.
			rl := openRef(t, "partition-"+tc.tag[len("v1--"):])
			refManifest, _ := rl.image()
			var ref ocispec.Manifest
			var refCfg ocispec.Image
			if err := json.Unmarshal(refManifest, &ref); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(rl.blob(ref.Config.Digest), &refCfg); err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got.Layers, ref.Layers, sameLayer) {
				t.Errorf("layers differ from the reference builder's partition:\n got %v\nwant %v", got.Layers, ref.Layers)
			}
			if !slices.Equal(gotCfg.RootFS.DiffIDs, refCfg.RootFS.DiffIDs) {
				t.Errorf("diff_ids differ from the reference builder's partition:\n got %v\nwant %v", gotCfg.RootFS.DiffIDs, refCfg.RootFS.DiffIDs)
			}
		})
	}
}

func sameLayer(a, b ocispec.Descriptor) bool {
	return a.MediaType == b.MediaType && a.Digest == b.Digest && a.Size == b.Size
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tarEntries(t *testing.T, b []byte) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h.Size
	}
}
