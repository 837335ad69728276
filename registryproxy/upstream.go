package registryproxy

// The upstream client: the proxy's own requests to a registry (as opposed
// to passed-through ones), checked and capped, and the image.Source a
// partition is read through.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
)

// upstream is one registry the proxy may talk to.
type upstream struct {
	url *url.URL
	// client makes the proxy's own requests (partition builds, access
	// checks). It follows redirects (config blobs are often redirected to
	// object storage), dropping Authorization when one leaves the host.
	client *http.Client
	rp     *httputil.ReverseProxy
	// failures says when the upstream, or one repository of it, last
	// failed the proxy's own requests (outage.go).
	*failures
}

// isDialError reports whether err is a failure to connect to the
// upstream (refused, unreachable, a name that does not resolve, a dial
// timeout), as opposed to one of a request on a connection.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// manifestAccept is sent when the client sent no Accept (and for access
// checks): every manifest type the rewriter reads.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	partition.MediaTypeDockerManifestList, partition.MediaTypeDockerManifest,
}, ", ")

// maxErrorBody caps an upstream error body we relay.
const maxErrorBody = 64 << 10

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

// upstreamSource is the image.Source of one repository of the upstream,
// read with the client's credentials.
type upstreamSource struct {
	p    *Proxy
	up   *upstream
	name string
	hdr  http.Header
}

// Manifest fetches a manifest by tag with the client's Accept, and by digest
// (the platform manifests of an index) whatever its type: a client asking
// for an index (Accept: the index types only, as crane and
// go-containerregistry do) would otherwise get the registry's 404 for every
// platform.
func (s upstreamSource) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	hdr := s.hdr
	if _, err := digest.Parse(ref); err == nil {
		hdr = s.hdr.Clone()
		hdr.Set("Accept", manifestAccept)
	}
	return s.p.fetchManifest(ctx, s.up, s.name, ref, hdr)
}

// Blob fetches a config or field blob. A manifest announcing one over the
// cap is refused like any oversized upstream object (502, via ErrTooLarge).
func (s upstreamSource) Blob(ctx context.Context, d ocispec.Descriptor, limit int64) ([]byte, error) {
	return s.p.fetchBlob(ctx, s.up, s.name, d, limit, s.hdr)
}

// Size asks the upstream for the size of an allotment blob of a
// reference-format image, which no manifest lists with its size.
func (b upstreamSource) Size(ctx context.Context, d digest.Digest) (int64, error) {
	h := b.hdr.Clone()
	h.Del("Accept")
	resp, err := b.p.get(ctx, http.MethodHead, b.up, b.name, "blobs/"+d.String(), h)
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

// get sends a request for /v2/<name>/<path> to up with the client's headers
// and returns the response if it is a 200. Other statuses become
// upstreamStatusError. A 5xx counts as a failure of repository name only,
// an unreachable upstream as a failure of the whole upstream (outage.go).
func (p *Proxy) get(ctx context.Context, method string, up *upstream, name, path string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, up.url.JoinPath("/v2/", name+"/"+path).String(), nil)
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
		up.failedRepository(name)
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
	resp, err := p.get(ctx, http.MethodGet, up, name, "manifests/"+ref, hdr)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := readCapped(resp.Body, p.limits.ManifestBytes, "manifest "+name+":"+ref)
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
	if err := validateDescriptors(data, manifestName(name, ref), p.limits); err != nil { // validate.go
		return nil, "", err
	}
	return data, partition.MediaTypeOf(data, mediaTypeOf(resp.Header.Get("Content-Type"))), nil
}

// fetchBlob GETs a small blob (a config, a field blob) and verifies its
// digest and size. The descriptor's size, checked against limit before the
// request, sizes the buffer: a 15 MiB config is read into 15 MiB, not into
// the twice as much a growing buffer would allocate on the way.
func (p *Proxy) fetchBlob(ctx context.Context, up *upstream, name string, d ocispec.Descriptor, limit int64, hdr http.Header) ([]byte, error) {
	if d.Size < 0 || d.Size > limit {
		return nil, &badUpstreamError{fmt.Errorf("blob %s: the manifest says it is %d bytes, the limit is %d: %w", d.Digest, d.Size, limit, partition.ErrTooLarge)}
	}
	h := hdr.Clone()
	h.Del("Accept")
	resp, err := p.get(ctx, http.MethodGet, up, name, "blobs/"+d.Digest.String(), h)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data := make([]byte, d.Size)
	n, err := io.ReadFull(resp.Body, data)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) && d.Size > 0:
		return nil, &badUpstreamError{fmt.Errorf("blob %s is %d bytes, the manifest says %d", d.Digest, n, d.Size)}
	case err != nil:
		return nil, &transportError{redact(err)}
	}
	// More than the manifest says: count it (up to the limit) to say so.
	if extra, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, limit+1-d.Size)); extra > 0 {
		return nil, &badUpstreamError{fmt.Errorf("blob %s is %d bytes or more, the manifest says %d", d.Digest, d.Size+extra, d.Size)}
	}
	if err := verifyDigest(d.Digest, data); err != nil {
		return nil, &badUpstreamError{fmt.Errorf("blob %s: %w", d.Digest, err)}
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
