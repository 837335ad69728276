package registryproxy

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// ErrNotFound is returned by a Store that does not hold a digest.
var ErrNotFound = errors.New("not found")

// Object is a synthesized manifest, index or config the proxy serves by
// digest. It is immutable: Data is content-addressed by Digest.
type Object struct {
	Digest    digest.Digest
	MediaType string
	Data      []byte
	// Source is the manifest the object was derived from. Before serving
	// the object the proxy checks the caller can read Source in the
	// repository the request names, so a partition never reveals more
	// than its source would.
	Source digest.Digest
	// Scopes are the upstreams and repositories (see Scope) the object
	// was built from. The proxy serves it only through one of them, and
	// checks access to Source only there: another upstream (a second
	// mirror) or repository may hold the same source digest with other
	// rights. Identical partitions built from several places are one
	// object with several scopes; stores merge them on Put. An object
	// without scopes (stored before they existed) is never served.
	Scopes []string
	// Manifest is true for manifests and indexes (served under
	// /manifests/), false for configs (served under /blobs/).
	Manifest bool
}

// Scope names where an object was built from: an upstream registry's URL
// and a repository in it.
func Scope(upstream, repository string) string { return upstream + " " + repository }

// maxScopes bounds the scopes kept per object (the most recent win): each
// is one place that built an identical partition, and one that was
// dropped only costs that place a rebuild.
const maxScopes = 64

// BoundTo reports whether o was built from scope.
func (o *Object) BoundTo(scope string) bool { return slices.Contains(o.Scopes, scope) }

// withScopes returns o with the scopes of old it lacks added (before its
// own, which are newer), or o itself when there is nothing to add.
func (o *Object) withScopes(old []string) *Object {
	var add []string
	for _, sc := range old {
		if !o.BoundTo(sc) && !slices.Contains(add, sc) {
			add = append(add, sc)
		}
	}
	if len(add) == 0 {
		return o
	}
	merged := *o
	merged.Scopes = append(add, o.Scopes...)
	if n := len(merged.Scopes); n > maxScopes {
		merged.Scopes = merged.Scopes[n-maxScopes:]
	}
	return &merged
}

// Store holds synthesized objects. Implementations must be safe for
// concurrent use and must only return an object whose Data matches Digest.
type Store interface {
	Get(ctx context.Context, d digest.Digest) (*Object, error)
	Put(ctx context.Context, o *Object) error
}

// MemoryStore is an LRU store bounded in bytes of Data.
type MemoryStore struct {
	max int64

	mu    sync.Mutex
	size  int64
	order *list.List // front is most recently used; values are *Object
	items map[digest.Digest]*list.Element
}

// NewMemoryStore returns a store holding at most maxBytes of object data.
// Objects larger than maxBytes are not kept.
func NewMemoryStore(maxBytes int64) *MemoryStore {
	return &MemoryStore{max: maxBytes, order: list.New(), items: map[digest.Digest]*list.Element{}}
}

func (s *MemoryStore) Get(_ context.Context, d digest.Digest) (*Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[d]
	if !ok {
		return nil, ErrNotFound
	}
	s.order.MoveToFront(e)
	return e.Value.(*Object), nil
}

func (s *MemoryStore) Put(_ context.Context, o *Object) error {
	if err := verify(o); err != nil {
		return err
	}
	n := int64(len(o.Data))
	if n > s.max {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[o.Digest]; ok {
		// Same bytes; keep the places it was built from.
		e.Value = o.withScopes(e.Value.(*Object).Scopes)
		s.order.MoveToFront(e)
		return nil
	}
	for s.size+n > s.max {
		oldest := s.order.Back()
		old := s.order.Remove(oldest).(*Object)
		delete(s.items, old.Digest)
		s.size -= int64(len(old.Data))
	}
	s.items[o.Digest] = s.order.PushFront(o)
	s.size += n
	return nil
}

// Len and Bytes report what the store holds, for metrics and tests.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

func (s *MemoryStore) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// DirStore keeps objects in a directory so they survive restarts: clients
// that resolved a partition digest before a restart can still fetch it.
// Layout: <dir>/<algorithm>/<encoded> holds the data and
// <dir>/<algorithm>/<encoded>.meta its media type and source. Writes go to a
// temporary file renamed into place, so a crash never leaves a partial
// object under a digest name; reads verify the digest.
type DirStore struct {
	dir string
}

// NewDirStore creates dir if needed. Directories are 0700 and files 0600:
// the store holds manifests and configs of private images.
func NewDirStore(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &DirStore{dir: dir}, nil
}

type objectMeta struct {
	MediaType string        `json:"mediaType"`
	Source    digest.Digest `json:"source"`
	Manifest  bool          `json:"manifest"`
	Scopes    []string      `json:"scopes,omitempty"`
}

func (s *DirStore) path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, string(d.Algorithm()), d.Encoded()), nil
}

func (s *DirStore) Get(_ context.Context, d digest.Digest) (*Object, error) {
	p, err := s.path(d)
	if err != nil {
		return nil, ErrNotFound
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	metaBytes, err := os.ReadFile(p + ".meta")
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	var meta objectMeta
	if err := json.Unmarshal(metaBytes, &meta); err != nil {
		return nil, fmt.Errorf("store: %s.meta: %w", p, err)
	}
	o := &Object{Digest: d, MediaType: meta.MediaType, Data: data, Source: meta.Source, Manifest: meta.Manifest, Scopes: meta.Scopes}
	if err := verify(o); err != nil {
		// A damaged file is a miss: the proxy rebuilds the object.
		return nil, ErrNotFound
	}
	return o, nil
}

func (s *DirStore) Put(ctx context.Context, o *Object) error {
	if err := verify(o); err != nil {
		return err
	}
	p, err := s.path(o.Digest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	// Keep the scopes of an identical object already there. Two
	// concurrent Puts may lose one; that place then misses and rebuilds.
	if old, err := s.Get(ctx, o.Digest); err == nil {
		o = o.withScopes(old.Scopes)
	}
	meta, err := json.Marshal(objectMeta{MediaType: o.MediaType, Source: o.Source, Manifest: o.Manifest, Scopes: o.Scopes})
	if err != nil {
		return err
	}
	// Metadata first: Get needs both, and a data file without metadata is
	// a miss, not a wrong answer.
	if err := writeAtomic(p+".meta", meta); err != nil {
		return err
	}
	return writeAtomic(p, o.Data)
}

func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// TieredStore reads from the first store that has an object, filling the
// faster ones on the way back, and writes to all of them, slowest first so
// an object is durable before it is served from memory.
type TieredStore []Store

func (t TieredStore) Get(ctx context.Context, d digest.Digest) (*Object, error) {
	for i, s := range t {
		o, err := s.Get(ctx, d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, faster := range t[:i] {
			_ = faster.Put(ctx, o) // a cache fill; the object is already served
		}
		return o, nil
	}
	return nil, ErrNotFound
}

func (t TieredStore) Put(ctx context.Context, o *Object) error {
	for i := len(t) - 1; i >= 0; i-- {
		if err := t[i].Put(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// getBound returns the object d of s if it was built from scope, else
// ErrNotFound. A tiered store is searched tier by tier: a faster tier may
// hold the object with fewer scopes than a shared one (another replica
// built it from elsewhere since).
func getBound(ctx context.Context, s Store, d digest.Digest, scope string) (*Object, error) {
	if t, ok := s.(TieredStore); ok {
		for i, tier := range t {
			o, err := getBound(ctx, tier, d, scope)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, faster := range t[:i] {
				_ = faster.Put(ctx, o) // a cache fill, merging scopes
			}
			return o, nil
		}
		return nil, ErrNotFound
	}
	o, err := s.Get(ctx, d)
	if err != nil {
		return nil, err
	}
	if !o.BoundTo(scope) {
		return nil, ErrNotFound
	}
	return o, nil
}

// bind sets the scope of freshly built objects.
func bind(objs []*Object, scope string) {
	for _, o := range objs {
		o.Scopes = []string{scope}
	}
}

func verify(o *Object) error {
	if err := o.Digest.Validate(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if o.Digest.Algorithm().FromBytes(o.Data) != o.Digest {
		return fmt.Errorf("store: data does not match digest %s", o.Digest)
	}
	return nil
}

// memoryStoreOf finds the memory store in s, for metrics.
func memoryStoreOf(s Store) *MemoryStore {
	switch s := s.(type) {
	case *MemoryStore:
		return s
	case TieredStore:
		for _, t := range s {
			if m := memoryStoreOf(t); m != nil {
				return m
			}
		}
	}
	return nil
}
