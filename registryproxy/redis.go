package registryproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"
)

// RedisStore keeps synthesized objects in Redis, so that several proxy
// replicas behind a load balancer share them: a client may resolve a
// partition tag on one replica and fetch the manifest and config by digest
// from another. Put it behind a MemoryStore in a TieredStore (as
// cmd/2dfs-proxy does) so hot objects are served without a round trip.
//
// Each object is one hash at <prefix><digest> with the fields data,
// mediaType, source, manifest and one scope:<scope> per scope, written in one MULTI/EXEC so a reader
// never sees half an object. Reads verify the digest; an entry whose data
// does not match is a miss.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration

	// downUntil (Unix nanoseconds) is set when Redis fails to answer:
	// until then Get and Put fail at once instead of waiting on Redis
	// again. Every blob request looks its digest up in the store, so
	// without this a Redis outage would slow every pull, not only the
	// partitions.
	downUntil atomic.Int64
}

// RedisBackoff is how long a RedisStore fails fast after Redis did not
// answer.
const RedisBackoff = time.Second

// errRedisDown is returned while a RedisStore backs off.
var errRedisDown = errors.New("redis store: unavailable, retrying in a moment")

// available reports whether to try Redis now.
func (s *RedisStore) available() bool {
	return time.Now().UnixNano() >= s.downUntil.Load()
}

// failed records err; connection failures (not Redis's own error replies,
// nor a caller's cancelled context) start a backoff.
func (s *RedisStore) failed(ctx context.Context, err error) error {
	var re redis.Error
	if ctx.Err() == nil && !errors.As(err, &re) {
		s.downUntil.Store(time.Now().Add(RedisBackoff).UnixNano())
	}
	return fmt.Errorf("redis store: %w", err)
}

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	// Prefix is put before every key. Empty means DefaultRedisPrefix.
	Prefix string
	// TTL expires objects that long after they were last written (a
	// rebuild of the same partition writes it again). Zero keeps them
	// until Redis evicts them (maxmemory-policy).
	TTL time.Duration
}

// scopeField prefixes the hash field of each of an object's scopes.
const scopeField = "scope:"

// DefaultRedisPrefix is the key prefix of a RedisStore with none set.
const DefaultRedisPrefix = "2dfs-proxy:object:"

// NewRedisStore returns a store using client. The caller owns the client
// and closes it.
func NewRedisStore(client redis.UniversalClient, opts RedisOptions) *RedisStore {
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	return &RedisStore{client: client, prefix: opts.Prefix, ttl: opts.TTL}
}

func (s *RedisStore) key(d digest.Digest) string { return s.prefix + d.String() }

func (s *RedisStore) Get(ctx context.Context, d digest.Digest) (*Object, error) {
	if err := d.Validate(); err != nil {
		return nil, ErrNotFound
	}
	if !s.available() {
		return nil, errRedisDown
	}
	fields, err := s.client.HGetAll(ctx, s.key(d)).Result()
	if err != nil {
		return nil, s.failed(ctx, err)
	}
	data, ok := fields["data"]
	if !ok {
		return nil, ErrNotFound
	}
	o := &Object{
		Digest:    d,
		MediaType: fields["mediaType"],
		Data:      []byte(data),
		Source:    digest.Digest(fields["source"]),
		Manifest:  fields["manifest"] == "1",
	}
	for f := range fields {
		if sc, ok := strings.CutPrefix(f, scopeField); ok {
			o.Scopes = append(o.Scopes, sc)
		}
	}
	slices.Sort(o.Scopes) // map order is random; the set is what counts
	if verify(o) != nil || o.Source.Validate() != nil {
		// Damaged or foreign: a miss, so the proxy rebuilds the object
		// (and the Put overwrites the entry).
		return nil, ErrNotFound
	}
	return o, nil
}

func (s *RedisStore) Put(ctx context.Context, o *Object) error {
	if err := verify(o); err != nil {
		return err
	}
	if !s.available() {
		return errRedisDown
	}
	manifest := "0"
	if o.Manifest {
		manifest = "1"
	}
	key := s.key(o.Digest)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		// One field per scope: HSET adds to those of an identical object
		// built elsewhere instead of replacing them.
		fields := []any{"data", o.Data, "mediaType", o.MediaType, "source", o.Source.String(), "manifest", manifest}
		for _, sc := range o.Scopes {
			fields = append(fields, scopeField+sc, "1")
		}
		p.HSet(ctx, key, fields...)
		if s.ttl > 0 {
			p.Expire(ctx, key, s.ttl)
		} else {
			p.Persist(ctx, key)
		}
		return nil
	})
	if err != nil {
		return s.failed(ctx, err)
	}
	return nil
}

// Keep reports whether Redis holds every digest in ds, renewing their TTL
// (with one) as a rebuild would: a partition reused for a repeated tag is
// not written again, and its entries must outlive the tag requests that
// name them. One round trip.
func (s *RedisStore) Keep(ctx context.Context, ds []digest.Digest) (bool, error) {
	if !s.available() {
		return false, errRedisDown
	}
	cmds := make([]*redis.BoolCmd, 0, len(ds))
	var exists []*redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, d := range ds {
			if s.ttl > 0 {
				cmds = append(cmds, p.Expire(ctx, s.key(d), s.ttl))
			} else {
				exists = append(exists, p.Exists(ctx, s.key(d)))
			}
		}
		return nil
	})
	if err != nil {
		return false, s.failed(ctx, err)
	}
	for _, c := range cmds {
		if !c.Val() {
			return false, nil
		}
	}
	for _, c := range exists {
		if c.Val() != 1 {
			return false, nil
		}
	}
	return true, nil
}

// keeper is a store shared between replicas that can confirm (and keep
// alive) the objects of a reused partition.
type keeper interface {
	Keep(ctx context.Context, ds []digest.Digest) (bool, error)
}

// Keep asks every store of t that can keep objects.
func (t TieredStore) Keep(ctx context.Context, ds []digest.Digest) (bool, error) {
	for _, s := range t {
		if k, ok := s.(keeper); ok {
			if ok, err := k.Keep(ctx, ds); !ok || err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// Ping reports whether Redis answers; /readyz uses it. It always asks
// Redis, and a success ends a backoff.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return s.failed(ctx, err)
	}
	s.downUntil.Store(0)
	return nil
}

// pinger is a store that can tell whether its backend is up.
type pinger interface {
	Ping(ctx context.Context) error
}

// Ping pings every store of t that can be pinged.
func (t TieredStore) Ping(ctx context.Context) error {
	var errs []error
	for _, s := range t {
		if p, ok := s.(pinger); ok {
			errs = append(errs, p.Ping(ctx))
		}
	}
	return errors.Join(errs...)
}
