package registryproxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func obj(s string) *Object {
	return &Object{Digest: digest.FromString(s), MediaType: "text/plain", Data: []byte(s), Source: digest.FromString("src " + s), Manifest: true}
}

func TestMemoryStoreLRU(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(10)
	a, b, c := obj("aaaa"), obj("bbbb"), obj("cccc")
	for _, o := range []*Object{a, b} {
		if err := s.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, a.Digest); err != nil { // a is now the most recent
		t.Fatal(err)
	}
	if err := s.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, b.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("b should have been evicted: %v", err)
	}
	if _, err := s.Get(ctx, a.Digest); err != nil {
		t.Errorf("a evicted: %v", err)
	}
	if s.Bytes() != 8 || s.Len() != 2 {
		t.Errorf("store holds %d bytes in %d objects, want 8 in 2", s.Bytes(), s.Len())
	}
	if err := s.Put(ctx, obj(strings.Repeat("x", 11))); err != nil || s.Len() != 2 {
		t.Errorf("oversized object: err %v, len %d", err, s.Len())
	}
	bad := obj("dddd")
	bad.Data = []byte("other")
	if err := s.Put(ctx, bad); err == nil {
		t.Error("object whose data does not match its digest was stored")
	}
}

func TestDirStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := obj("config bytes")
	o.Manifest = false
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	s2, _ := NewDirStore(dir) // a restart
	got, err := s2.Get(ctx, o.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "config bytes" || got.Source != o.Source || got.MediaType != o.MediaType || got.Manifest {
		t.Errorf("got %+v", got)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "sha256", ".tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	// A damaged file is a miss, never wrong bytes.
	if err := os.WriteFile(filepath.Join(dir, "sha256", o.Digest.Encoded()), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, o.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("damaged object: %v", err)
	}
	if _, err := s2.Get(ctx, "sha256:../../etc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("invalid digest: %v", err)
	}
}

func TestTieredStore(t *testing.T) {
	ctx := context.Background()
	mem := NewMemoryStore(1 << 20)
	dir, _ := NewDirStore(t.TempDir())
	o := obj("x")
	if err := dir.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	ts := TieredStore{mem, dir}
	if _, err := ts.Get(ctx, o.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Get(ctx, o.Digest); err != nil {
		t.Error("a read from the directory did not fill memory")
	}
	p := obj("y")
	if err := ts.Put(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Get(ctx, p.Digest); err != nil {
		t.Error("a write did not reach the directory")
	}
}
