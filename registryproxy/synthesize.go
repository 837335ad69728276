package registryproxy

// Partition synthesis: a pull of NAME:TAG--SEL reads NAME:TAG upstream,
// partitions it with exporter/image and stores the results.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/field"
)

// servePartition answers GET/HEAD of NAME/manifests/TAG--SEL.
func (p *Proxy) servePartition(w http.ResponseWriter, r *http.Request, up *upstream, name, tag string) {
	base, sel, err := field.ParseTag(tag)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeTagInvalid, err.Error())
		return
	}
	// Callers with different credentials or Accept headers must not share
	// a build: one may see what the other may not, or get another type.
	// The key holds a hash of Authorization, never the token itself.
	auth := authHash(r.Header.Get("Authorization"))
	accept := strings.Join(r.Header.Values("Accept"), ",")
	key := strings.Join([]string{up.url.String(), name, sel.Tag(base), accept, auth}, "\x00")
	// Partitions are reused across callers: what one gets depends only
	// on the source manifest (checked upstream with each caller's own
	// credentials), the selection and the type the Accept chose.
	partKey := strings.Join([]string{up.url.String(), name, sel.Tag(base), accept}, "\x00")
	hdr := clientHeaders(r)

	ch := p.flight.DoChan(key, func() (any, error) {
		// Detached from the first caller: its going away must not fail
		// the others waiting on the same build.
		detached := context.WithoutCancel(r.Context())
		ctx, cancel := context.WithTimeout(detached, p.timeout)
		defer cancel()
		if objs, err := p.reuse(ctx, up, name, base, partKey, hdr); err != nil || objs != nil {
			if err == nil {
				p.metrics.builds.WithLabelValues("reused").Inc()
			}
			return objs, err
		}
		// Joiners of this flight share the slot it takes. The wait
		// for a slot is bounded by the build timeout, and the build
		// then has its own.
		release, err := p.admit.acquire(ctx)
		if err != nil {
			p.metrics.builds.WithLabelValues("rejected").Inc()
			return nil, err
		}
		defer release()
		ctx, cancel = context.WithTimeout(detached, p.timeout)
		defer cancel()
		start := time.Now()
		objs, err := p.synthesize(ctx, up, name, base, sel, hdr)
		result := "ok"
		if err != nil {
			result = "error"
		} else {
			b := builtPartition{source: objs[len(objs)-1].Source}
			for _, o := range objs {
				b.objects = append(b.objects, o.Digest)
			}
			p.parts.add(partKey, b)
		}
		p.metrics.builds.WithLabelValues(result).Inc()
		p.metrics.buildSeconds.Observe(time.Since(start).Seconds())
		return objs, err
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-r.Context().Done():
		return
	}
	if res.Err != nil {
		p.writePartitionError(w, r, name, base, tag, res.Err)
		return
	}
	objs := res.Val.([]*Object)
	// The caller just read every source of these objects upstream with
	// its credentials: its by-digest fetches that follow need no check.
	if p.access != nil {
		for _, o := range objs {
			p.access.add(accessKey(up, name, o.Source, auth), struct{}{})
		}
	}
	serveObject(w, r, objs[len(objs)-1])
}

// reuse returns the objects of the partition last built for partKey if the
// base tag still points at its source: one upstream HEAD of the tag with
// the caller's credentials and Accept (which also checks the caller may
// read it), store reads, and for Redis one round trip. It returns nil objects (and no error) when the
// partition must be built: nothing reusable, the tag moved, the upstream
// sent no digest, or the store lost an object. Upstream refusals are
// returned as errors, as a build would.
func (p *Proxy) reuse(ctx context.Context, up *upstream, name, base, partKey string, hdr http.Header) ([]*Object, error) {
	b, ok := p.parts.get(partKey)
	if !ok {
		return nil, nil
	}
	// As cached access checks, the window is not used for a while after
	// the upstream (or this repository of it) failed, so an outage answers
	// 502/504 for repeated tags too.
	fk := freshKey(partKey, hdr.Get("Authorization"))
	if _, fresh := p.fresh.get(fk); !fresh || up.failedWithin(name, p.fresh.ttl) {
		resp, err := p.get(ctx, http.MethodHead, up, name, "manifests/"+base, hdr)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if digest.Digest(resp.Header.Get("Docker-Content-Digest")) != b.source {
			return nil, nil
		}
		p.fresh.add(fk, struct{}{})
	}
	// Evicted or expired (or the store is down): build again, which
	// stores it again or fails as a build fails (500 when the store
	// cannot take it).
	if k, ok := p.store.(keeper); ok {
		// A shared store (Redis) must still hold the objects for other
		// replicas, and keeps them alive as the rebuild's write would.
		if ok, err := k.Keep(ctx, b.objects); !ok || err != nil {
			return nil, nil
		}
	}
	objs := make([]*Object, 0, len(b.objects))
	for _, d := range b.objects {
		o, err := getBound(ctx, p.store, d, scopeOf(up, name))
		if err != nil {
			return nil, nil
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func (p *Proxy) writePartitionError(w http.ResponseWriter, r *http.Request, name, base, tag string, err error) {
	var us *upstreamStatusError
	var bad *badUpstreamError
	switch {
	case errors.Is(err, errBusy):
		w.Header().Set("Retry-After", strconv.Itoa(p.admit.retryAfter()))
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, fmt.Sprintf("partition %s:%s: %v", name, tag, err))
		p.log.Debug("partition refused", "repository", name, "tag", tag, "err", err)
		return
	case errors.As(err, &us):
		us.write(w)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		writeError(w, http.StatusGatewayTimeout, codeUnavailable, fmt.Sprintf("partition %s:%s: upstream registry timed out", name, tag))
	case errors.As(err, &bad), errors.Is(err, partition.ErrTooLarge):
		writeError(w, http.StatusBadGateway, codeUnavailable, fmt.Sprintf("partition %s:%s: %v", name, tag, err))
	case errors.Is(err, partition.ErrNot2DFS), errors.Is(err, partition.ErrUnsupported):
		writeError(w, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("%s:%s has no partitions: %v", name, base, err))
	case errors.As(err, new(*transportError)):
		writeError(w, http.StatusBadGateway, codeUnavailable, fmt.Sprintf("partition %s:%s: upstream registry unreachable", name, tag))
	case errors.As(err, new(*storeError)):
		writeError(w, http.StatusInternalServerError, codeUnavailable, fmt.Sprintf("partition %s:%s: the proxy could not store it", name, tag))
	default:
		// The upstream image itself is broken (a stale field record,
		// layers that disagree with the config).
		writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("cannot partition %s:%s: %v", name, base, err))
	}
	level := slog.LevelWarn
	if us != nil && us.status < 500 {
		level = slog.LevelDebug // 401 before a token, 404 for a typo: normal traffic
	}
	p.log.Log(r.Context(), level, "partition failed", "repository", name, "tag", tag, "err", redact(err))
}

// storeError is a failure to keep a built partition; nothing is served
// because the follow-up fetch by digest would fail.
type storeError struct{ err error }

func (e *storeError) Error() string { return "store: " + e.err.Error() }

func (e *storeError) Unwrap() error { return e.err }

// synthesize fetches NAME:BASE, partitions it (every platform, for an index) and
// stores the results. It returns the stored objects, the top-level object
// last. Nothing is stored unless the whole build succeeds.
func (p *Proxy) synthesize(ctx context.Context, up *upstream, name, base string, sel field.Selection, hdr http.Header) ([]*Object, error) {
	// The client's Accept chose the top-level type; upstreamSource
	// fetches the platform manifests of an index whatever their type.
	part, err := image.Options{Limits: p.limits}.Partition(ctx, upstreamSource{p: p, up: up, name: name, hdr: hdr}, base, sel, "")
	if err != nil {
		return nil, err
	}
	var objs []*Object
	var top *Object
	if idx := part.Index; idx != nil {
		for _, c := range idx.Children {
			objs = append(objs, resultObjects(c)...)
		}
		top = &Object{Digest: idx.Digest, MediaType: idx.MediaType, Data: idx.Index, Source: idx.Source, Manifest: true}
	} else {
		objs = resultObjects(part.Images[0])
		top, objs = objs[len(objs)-1], objs[:len(objs)-1]
	}
	// Configs and platform manifests before the object that points at
	// them, so whatever a client can resolve is already there.
	objs = append(objs, top)
	bind(objs, scopeOf(up, name)) // served only through where it was built (store.go)
	for _, o := range objs {
		if err := p.store.Put(ctx, o); err != nil {
			return nil, &storeError{fmt.Errorf("storing %s: %w", o.Digest, err)}
		}
	}
	return objs, nil
}

func resultObjects(r *partition.Result) []*Object {
	return []*Object{
		{Digest: r.ConfigDigest, MediaType: r.ConfigMediaType, Data: r.Config, Source: r.Source},
		{Digest: r.ManifestDigest, MediaType: r.MediaType, Data: r.Manifest, Source: r.Source, Manifest: true},
	}
}
