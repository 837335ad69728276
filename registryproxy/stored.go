package registryproxy

// Serving synthesized objects from the store by digest, after an access
// check upstream.

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
)

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
	// the upstream, or this repository of it, failed since: an outage is
	// not hidden.
	var ak string
	if p.access != nil {
		ak = accessKey(up, name, obj.Source, authHash(r.Header.Get("Authorization")))
		if _, ok := p.access.get(ak); ok && !up.failedWithin(name, p.access.ttl) {
			serveObject(w, r, obj)
			return true
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	hdr := clientHeaders(r)
	hdr.Set("Accept", manifestAccept)
	resp, err := p.get(ctx, http.MethodHead, up, name, "manifests/"+obj.Source.String(), hdr)
	if err != nil {
		p.writePartitionError(w, r, name, obj.Source.String(), ref, err)
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
