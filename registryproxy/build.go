package registryproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
	"github.com/tdfs-kit/tdfs/field"
)

// manifestAccept is sent when the client sent no Accept (and for access
// checks): every manifest type the rewriter reads.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	partition.MediaTypeDockerManifestList, partition.MediaTypeDockerManifest,
}, ", ")

// maxErrorBody caps an upstream error body we relay.
const maxErrorBody = 64 << 10

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
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.timeout)
		defer cancel()
		if objs, err := p.reuse(ctx, up, name, base, partKey, hdr); err != nil || objs != nil {
			if err == nil {
				p.metrics.builds.WithLabelValues("reused").Inc()
			}
			return objs, err
		}
		start := time.Now()
		objs, err := p.build(ctx, up, name, base, sel, hdr)
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
		p.writeBuildError(w, r, name, base, tag, res.Err)
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
	resp, err := p.get(ctx, http.MethodHead, up, name+"/manifests/"+base, hdr)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if digest.Digest(resp.Header.Get("Docker-Content-Digest")) != b.source {
		return nil, nil
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

// clientHeaders are the request headers forwarded on the proxy's own
// upstream requests.
func clientHeaders(r *http.Request) http.Header {
	h := http.Header{}
	for _, k := range []string{"Authorization", "Accept", "User-Agent"} {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	if h.Get("Accept") == "" {
		h.Set("Accept", manifestAccept)
	}
	return h
}

func (p *Proxy) writeBuildError(w http.ResponseWriter, r *http.Request, name, base, tag string, err error) {
	var us *upstreamStatusError
	var bad *badUpstreamError
	switch {
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

// build fetches NAME:BASE, partitions it (every platform, for an index) and
// stores the results. It returns the stored objects, the top-level object
// last. Nothing is stored unless the whole build succeeds.
func (p *Proxy) build(ctx context.Context, up *upstream, name, base string, sel field.Selection, hdr http.Header) ([]*Object, error) {
	data, mediaType, err := p.fetchManifest(ctx, up, name, base, hdr)
	if err != nil {
		return nil, err
	}
	var objs []*Object
	var top *Object
	switch {
	case partition.IsIndex(mediaType):
		// The client's Accept chose the top-level type. Platform
		// manifests are fetched by digest and must be fetched whatever
		// their type: a client asking for an index (Accept: the index
		// types only, as crane and go-containerregistry do) would
		// otherwise get the registry's 404 for every platform.
		childHdr := hdr.Clone()
		childHdr.Set("Accept", manifestAccept)
		idx, err := partition.Index(ctx, data, mediaType, sel, func(ctx context.Context, d ocispec.Descriptor) (*partition.Result, error) {
			child, childType, err := p.fetchManifest(ctx, up, name, d.Digest.String(), childHdr)
			if err != nil {
				return nil, err
			}
			return p.partitionImage(ctx, up, name, child, childType, sel, hdr)
		})
		if err != nil {
			return nil, err
		}
		for _, c := range idx.Children {
			objs = append(objs, resultObjects(c)...)
		}
		top = &Object{Digest: idx.Digest, MediaType: idx.MediaType, Data: idx.Index, Source: idx.Source, Manifest: true}
	case partition.IsManifest(mediaType):
		res, err := p.partitionImage(ctx, up, name, data, mediaType, sel, hdr)
		if err != nil {
			return nil, err
		}
		objs = resultObjects(res)
		top, objs = objs[len(objs)-1], objs[:len(objs)-1]
	default:
		return nil, fmt.Errorf("%s:%s is a %q: %w", name, base, mediaType, partition.ErrUnsupported)
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

// partitionImage partitions one image manifest, ours or in the reference
// 2DFS format (whose allotments are blobs named by a field layer).
func (p *Proxy) partitionImage(ctx context.Context, up *upstream, name string, manifest []byte, mediaType string, sel field.Selection, hdr http.Header) (*partition.Result, error) {
	return tdfs.PartitionImage(ctx, manifest, mediaType, sel, upstreamBlobs{p: p, up: up, name: name, hdr: hdr})
}

// upstreamBlobs reads the blobs a partition needs from the upstream, with
// the client's credentials.
type upstreamBlobs struct {
	p    *Proxy
	up   *upstream
	name string
	hdr  http.Header
}

// Blob fetches a config or field blob. A manifest announcing one over the
// cap is refused like any oversized upstream object (502, via ErrTooLarge).
func (b upstreamBlobs) Blob(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	return b.p.fetchBlob(ctx, b.up, b.name, d, b.hdr)
}

// Size asks the upstream for the size of an allotment blob of a
// reference-format image, which no manifest lists with its size.
func (b upstreamBlobs) Size(ctx context.Context, d digest.Digest) (int64, error) {
	h := b.hdr.Clone()
	h.Del("Accept")
	resp, err := b.p.get(ctx, http.MethodHead, b.up, b.name+"/blobs/"+d.String(), h)
	if err != nil {
		var us *upstreamStatusError
		if errors.As(err, &us) && us.status == http.StatusNotFound {
			return 0, &badUpstreamError{fmt.Errorf("allotment blob %s is missing from %s", d, b.name)}
		}
		return 0, err
	}
	resp.Body.Close()
	if resp.ContentLength < 0 {
		return 0, &badUpstreamError{fmt.Errorf("allotment blob %s: the registry sent no size", d)}
	}
	return resp.ContentLength, nil
}

// transportError is a failure to talk to the upstream at all.
type transportError struct{ err error }

func (e *transportError) Error() string { return "upstream request failed: " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// get sends a request for /v2/<path> to up with the client's headers and
// returns the response if it is a 200. Other statuses become
// upstreamStatusError.
func (p *Proxy) get(ctx context.Context, method string, up *upstream, path string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, up.url.JoinPath("/v2/", path).String(), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := up.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			up.failed()
		}
		return nil, &transportError{redact(err)}
	}
	if resp.StatusCode >= 500 {
		up.failed()
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &upstreamStatusError{status: resp.StatusCode, header: resp.Header, body: body}
	}
	return resp, nil
}

// readCapped reads at most limit bytes of body, failing if there is more.
func readCapped(body io.Reader, limit int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, &transportError{redact(err)}
	}
	if int64(len(data)) > limit {
		return nil, &badUpstreamError{fmt.Errorf("%s is over %d bytes: %w", what, limit, partition.ErrTooLarge)}
	}
	return data, nil
}

// fetchManifest GETs a manifest by tag or digest and verifies it: the body
// must match the Docker-Content-Digest the upstream sent, and the digest
// asked for when ref is one.
func (p *Proxy) fetchManifest(ctx context.Context, up *upstream, name, ref string, hdr http.Header) ([]byte, string, error) {
	resp, err := p.get(ctx, http.MethodGet, up, name+"/manifests/"+ref, hdr)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := readCapped(resp.Body, partition.MaxManifestBytes, "manifest "+name+":"+ref)
	if err != nil {
		return nil, "", err
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		if err := verifyDigest(digest.Digest(h), data); err != nil {
			return nil, "", &badUpstreamError{fmt.Errorf("manifest %s:%s: Docker-Content-Digest: %w", name, ref, err)}
		}
	}
	if d, err := digest.Parse(ref); err == nil {
		if err := verifyDigest(d, data); err != nil {
			return nil, "", &badUpstreamError{fmt.Errorf("manifest %s@%s: %w", name, ref, err)}
		}
	}
	if err := validateDescriptors(data, manifestName(name, ref)); err != nil { // validate.go
		return nil, "", err
	}
	return data, partition.MediaTypeOf(data, mediaTypeOf(resp.Header.Get("Content-Type"))), nil
}

// fetchBlob GETs a small blob (a config, a field blob) and verifies its
// digest and size.
func (p *Proxy) fetchBlob(ctx context.Context, up *upstream, name string, d ocispec.Descriptor, hdr http.Header) ([]byte, error) {
	h := hdr.Clone()
	h.Del("Accept")
	resp, err := p.get(ctx, http.MethodGet, up, name+"/blobs/"+d.Digest.String(), h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := readCapped(resp.Body, partition.MaxConfigBytes, "blob "+d.Digest.String())
	if err != nil {
		return nil, err
	}
	if err := verifyDigest(d.Digest, data); err != nil {
		return nil, &badUpstreamError{fmt.Errorf("blob %s: %w", d.Digest, err)}
	}
	if int64(len(data)) != d.Size {
		return nil, &badUpstreamError{fmt.Errorf("blob %s is %d bytes, the manifest says %d", d.Digest, len(data), d.Size)}
	}
	return data, nil
}

func verifyDigest(d digest.Digest, data []byte) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return fmt.Errorf("content is %s, not %s", got, d)
	}
	return nil
}

// mediaTypeOf drops parameters from a Content-Type.
func mediaTypeOf(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(mt)
}

// serveStored answers GET/HEAD of a synthesized object by digest, after
// checking the caller can read the object's source in the repository named
// in the request. It returns false when the store does not hold the digest
// built from this upstream and repository (or holds it in the other
// namespace) so the request passes through.
func (p *Proxy) serveStored(w http.ResponseWriter, r *http.Request, up *upstream, name, kind, ref string) bool {
	d, err := digest.Parse(ref)
	if err != nil {
		return false
	}
	obj, err := getBound(r.Context(), p.store, d, scopeOf(up, name))
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			p.log.Warn("store read failed", "digest", d, "err", err)
		}
		p.metrics.storeLookups.WithLabelValues("miss").Inc()
		return false
	}
	if obj.Manifest != (kind == "manifests") {
		p.metrics.storeLookups.WithLabelValues("miss").Inc()
		return false
	}
	p.metrics.storeLookups.WithLabelValues("hit").Inc()

	// A successful check is trusted for AccessCacheTTL for the same
	// caller (a hash of its Authorization), repository and source, unless
	// the upstream failed since: an outage is not hidden.
	var ak string
	if p.access != nil {
		ak = accessKey(up, name, obj.Source, authHash(r.Header.Get("Authorization")))
		if _, ok := p.access.get(ak); ok && !up.failedWithin(p.access.ttl) {
			serveObject(w, r, obj)
			return true
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	hdr := clientHeaders(r)
	hdr.Set("Accept", manifestAccept)
	resp, err := p.get(ctx, http.MethodHead, up, name+"/manifests/"+obj.Source.String(), hdr)
	if err != nil {
		p.writeBuildError(w, r, name, obj.Source.String(), ref, err)
		return true
	}
	resp.Body.Close()
	if p.access != nil {
		p.access.add(ak, struct{}{})
	}
	serveObject(w, r, obj)
	return true
}

// serveObject writes a synthesized object with the headers registries send.
// http.ServeContent handles HEAD, Range and If-None-Match (against the ETag).
func serveObject(w http.ResponseWriter, r *http.Request, o *Object) {
	h := w.Header()
	if o.Manifest {
		h.Set("Content-Type", o.MediaType)
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Docker-Content-Digest", o.Digest.String())
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.Set("ETag", strconv.Quote(o.Digest.String()))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(o.Data))
}
