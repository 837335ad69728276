package registryproxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Defaults of the proxy's per-replica caches.
const (
	// DefaultAccessCacheTTL is how long cmd/2dfs-proxy trusts a successful
	// access check (-access-cache-ttl).
	DefaultAccessCacheTTL = 5 * time.Second
	// DefaultPartitionReuse is how long a built partition answers repeated
	// tag requests (after an upstream HEAD of the tag) before it is built
	// and stored again.
	DefaultPartitionReuse = time.Minute
	// accessCacheEntries and partitionCacheEntries bound the caches.
	accessCacheEntries    = 16384
	partitionCacheEntries = 4096
)

// authHash identifies a caller's credentials without keeping them.
func authHash(authorization string) string {
	h := sha256.Sum256([]byte(authorization))
	return hex.EncodeToString(h[:])
}

// ttlCache is a bounded LRU of keys that expire ttl after they were added.
// It is per replica and holds nothing secret: keys carry hashes of
// credentials, never the credentials.
type ttlCache[V any] struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List // front is most recently used; values are *ttlEntry[V]
	items map[string]*list.Element
}

type ttlEntry[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newTTLCache[V any](ttl time.Duration, max int) *ttlCache[V] {
	return &ttlCache[V]{ttl: ttl, max: max, now: time.Now, order: list.New(), items: map[string]*list.Element{}}
}

// get returns the value of key if it has not expired.
func (c *ttlCache[V]) get(key string) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return zero, false
	}
	ent := e.Value.(*ttlEntry[V])
	if !c.now().Before(ent.expires) {
		c.order.Remove(e)
		delete(c.items, key)
		return zero, false
	}
	c.order.MoveToFront(e)
	return ent.val, true
}

// add sets key to val, expiring ttl from now, evicting the least recently
// used entries beyond max.
func (c *ttlCache[V]) add(key string, val V) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.now().Add(c.ttl)
	if e, ok := c.items[key]; ok {
		ent := e.Value.(*ttlEntry[V])
		ent.val, ent.expires = val, exp
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(&ttlEntry[V]{key: key, val: val, expires: exp})
	for c.order.Len() > c.max {
		old := c.order.Remove(c.order.Back()).(*ttlEntry[V])
		delete(c.items, old.key)
	}
}

func (c *ttlCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// accessKey names a successful access check: the caller (by a hash of its
// Authorization) could read source in repository name of the upstream.
func accessKey(up *upstream, name string, source digest.Digest, auth string) string {
	return strings.Join([]string{up.url.String(), name, source.String(), auth}, "\x00")
}

// scopeOf is the Scope of objects built from repository name of up.
func scopeOf(up *upstream, name string) string { return Scope(up.url.String(), name) }

// builtPartition is what a partition tag resolved to: the source manifest
// the tag pointed at and the stored objects made from it (the top-level
// object last).
type builtPartition struct {
	source  digest.Digest
	objects []digest.Digest
}
