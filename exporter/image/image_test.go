package image_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

var grid = []field.Cell{{Row: 0, Col: 0}, {Row: 0, Col: 1}, {Row: 1, Col: 1}, {Row: 2, Col: 0}}

// memSource is a repository in memory that counts what it is asked.
type memSource struct {
	mu    sync.Mutex
	tags  map[string][]byte
	blobs map[digest.Digest][]byte
	calls int
	fail  map[digest.Digest]error
}

func newMem() *memSource {
	return &memSource{tags: map[string][]byte{}, blobs: map[digest.Digest][]byte{}, fail: map[digest.Digest]error{}}
}

func (m *memSource) add(bs ...[]byte) {
	for _, b := range bs {
		m.blobs[digest.FromBytes(b)] = b
	}
}

func (m *memSource) get(d digest.Digest) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if err := m.fail[d]; err != nil {
		return nil, err
	}
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s is missing", d)
	}
	return b, nil
}

func (m *memSource) Manifest(_ context.Context, ref string) ([]byte, string, error) {
	if d, err := digest.Parse(ref); err == nil {
		b, err := m.get(d)
		return b, "", err
	}
	m.mu.Lock()
	m.calls++
	b := m.tags[ref]
	m.mu.Unlock()
	return b, "", nil
}

func (m *memSource) Blob(_ context.Context, d ocispec.Descriptor, limit int64) ([]byte, error) {
	return m.get(d.Digest)
}

func (m *memSource) Size(_ context.Context, d digest.Digest) (int64, error) {
	b, err := m.get(d)
	return int64(len(b)), err
}

// identical returns a source whose tag v1 is an index listing one image n
// times.
func identical(n int) (*memSource, *partitiontest.Image) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	p := partitiontest.Platform{Image: img, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	platforms := make([]partitiontest.Platform, n)
	for i := range platforms {
		platforms[i] = p
	}
	index, _ := partitiontest.Index(ocispec.MediaTypeImageIndex, platforms...)
	src := newMem()
	src.tags["v1"] = index
	src.add(append(img.Blobs(), img.Manifest)...)
	return src, img
}

func TestIdenticalChildrenReadOnce(t *testing.T) {
	ctx := context.Background()
	n := partition.MaxIndexManifests
	src, _ := identical(n)
	part, err := image.Partition(ctx, src, "v1", partitiontest.Selection(t, "0.0.0.0"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(part.Images) != n || part.Index == nil {
		t.Fatalf("%d images, want %d", len(part.Images), n)
	}
	// The index, the manifest, its config.
	if src.calls != 3 {
		t.Errorf("partition: %d source calls, want 3", src.calls)
	}

	src.calls = 0
	conv, err := image.Convert(ctx, src, "v1", "r/m:v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(conv.Index.Children) != n || len(conv.Sources) != 1 || src.calls != 3 {
		t.Errorf("convert: %d children, %d sources, %d source calls", len(conv.Index.Children), len(conv.Sources), src.calls)
	}

	src.calls = 0
	rep, err := image.Inspect(ctx, src, "v1", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != n || src.calls != 3 {
		t.Errorf("inspect: %d images, %d source calls", len(rep.Images), src.calls)
	}
}

func TestChildErrorContext(t *testing.T) {
	src, img := identical(2)
	cd, _ := partition.ConfigOf(img.Manifest)
	src.fail[cd.Digest] = errors.New("401 unauthorized")
	_, err := image.Partition(context.Background(), src, "v1", partitiontest.Selection(t, "0.0.0.0"), "")
	want := "index manifests[0] (" + img.Digest().String() + "): config: 401 unauthorized"
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// Both formats partition through the same call, to the same record.
func TestPartitionEitherFormat(t *testing.T) {
	ctx := context.Background()
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 2, grid...)
	ref, err := tdfs.FromImage(img.Manifest, "", img.Config)
	if err != nil {
		t.Fatal(err)
	}
	src := newMem()
	src.add(append(img.Blobs(), ref.Config, ref.FieldBlob)...)
	src.tags["ours"], src.tags["theirs"] = img.Manifest, ref.Manifest
	s := partitiontest.Selection(t, "1.0.2.2")
	ours, err := image.Partition(ctx, src, "ours", s, "")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := image.Partition(ctx, src, "theirs", s, "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ours.Images[0].Record) != fmt.Sprint(theirs.Images[0].Record) || len(theirs.Images[0].Record.Allotments) != 2 {
		t.Errorf("records differ: %+v, %+v", ours.Images[0].Record, theirs.Images[0].Record)
	}
	if _, err := image.Convert(ctx, src, "theirs", "x"); !errors.Is(err, image.ErrReference) {
		t.Errorf("converting a reference image: %v", err)
	}
	delete(src.blobs, ref.FieldDigest)
	if _, err := image.Partition(ctx, src, "theirs", partitiontest.Selection(t, "0.0.0.0"), ""); err == nil || !strings.HasPrefix(err.Error(), "field blob: ") {
		t.Errorf("missing field blob: %v", err)
	}
}
