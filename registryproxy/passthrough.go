package registryproxy

// Pass-through: everything the proxy does not answer itself goes to the
// upstream through httputil.ReverseProxy, streamed.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
)

func (p *Proxy) reverseProxy(up *upstream, transport http.RoundTripper) *httputil.ReverseProxy {
	// storage follows blob redirects (FollowBlobRedirects). Its transport
	// adds the upstream credentials only on the upstream's own host, and
	// checkRedirect keeps a caller's Authorization only there.
	storage := &http.Client{Transport: transport, CheckRedirect: checkRedirect}
	return &httputil.ReverseProxy{
		Transport: transport,
		// ReverseProxy copies bodies with its own loop (it never uses
		// the ResponseWriter's io.ReaderFrom, and the source is an HTTP
		// client body, which cannot be spliced anyway), 32 KiB at a time
		// by default: one read and one write syscall per 32 KiB held
		// blob pass-through to ~0.65× of the registry's speed on
		// loopback. 1 MiB buffers from a pool (one per body in flight)
		// cut the syscalls up to 32-fold. What remains is the cost of
		// the hop itself: splicing the body between the sockets (no
		// copies at all) measured the same, and so does a bare TCP
		// forwarder (BenchmarkPassThrough, docs/benchmarks.md).
		BufferPool: copyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up.url)
			pr.Out.Host = up.url.Host
			// Ask for the encoding the client asked for, and relay the
			// answer as it is: without one, net/http's transport would
			// add Accept-Encoding: gzip and decompress the answer on the
			// proxy's CPU. (The proxy's own requests keep gzip.)
			if _, ok := pr.Out.Header["Accept-Encoding"]; !ok {
				pr.Out.Header.Set("Accept-Encoding", "identity")
			}
			if q := pr.Out.URL.Query(); q.Has("ns") {
				// containerd's mirror hint is for us, not the upstream;
				// remember it for the Location of an upload.
				pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), nsKey{}, q.Get("ns")))
				q.Del("ns")
				pr.Out.URL.RawQuery = q.Encode()
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			// A relayed 5xx is not an outage: a client can provoke one
			// (issue 11); only the proxy's own requests and an
			// unreachable upstream (ErrorHandler) count.
			rewriteLocation(resp, up.url)
			if p.follow {
				return followBlobRedirect(storage, up, resp)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away; nobody to answer
			}
			var se *storageError
			if errors.As(err, &se) {
				// Storage is not the upstream registry: no outage.
				p.log.Warn("blob storage unreachable", "path", r.URL.Path, "err", se.err)
				if errors.Is(se.err, context.DeadlineExceeded) || isTimeout(se.err) {
					writeError(w, http.StatusGatewayTimeout, codeUnavailable, "the blob storage the upstream registry redirected to timed out")
					return
				}
				writeError(w, http.StatusBadGateway, codeUnavailable, "the blob storage the upstream registry redirected to is unreachable")
				return
			}
			// Only a registry that cannot be dialled is down for
			// everyone. A reset or a timeout of one relayed request is
			// not: a client can provoke either for a repository of its
			// choosing (a blob the registry is slow to find), and must
			// not switch off cached access checks for everyone else
			// (issue 11). The proxy's own checks and builds count their
			// own failures (upstream.go).
			if isDialError(err) {
				up.failed()
			}
			err = redact(err)
			p.log.Warn("upstream unreachable", "path", r.URL.Path, "err", err)
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				writeError(w, http.StatusGatewayTimeout, codeUnavailable, "upstream registry timed out")
				return
			}
			writeError(w, http.StatusBadGateway, codeUnavailable, "upstream registry unreachable")
		},
		// ReverseProxy's own log lines (body copy errors) carry no
		// credentials; keep them out of the request log's level.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

// checkRedirect drops the client's Authorization when a redirect leaves the
// registry's host:port. net/http only drops it when the host name changes,
// so a registry's token would reach storage on the same host at another
// port, or over plain HTTP.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
		req.Header.Del("Authorization")
	}
	return nil
}

// storageError is a failure to fetch a blob from where the upstream
// redirected it. err is redacted (no signed URL query).
type storageError struct{ err error }

func (e *storageError) Error() string { return "blob storage: " + e.err.Error() }

// followedHeaders are the caller's request headers a followed blob redirect
// carries to storage (Range for resumed pulls, and the conditionals).
var followedHeaders = []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "User-Agent"}

// followBlobRedirect replaces the upstream's redirect of a blob GET or HEAD
// by storage's answer at the Location (the upstream has checked the caller
// by then: it redirects only callers it lets read). The caller's
// Authorization goes along only if storage is the upstream's own host;
// Docker-Content-Digest is kept from the upstream's answer.
func followBlobRedirect(storage *http.Client, up *upstream, resp *http.Response) error {
	req := resp.Request
	switch {
	case req == nil, req.Method != http.MethodGet && req.Method != http.MethodHead,
		!strings.Contains(req.URL.Path, "/blobs/"):
		return nil
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil
	}
	loc, err := resp.Location()
	if err != nil || (loc.Scheme != "http" && loc.Scheme != "https") {
		return &storageError{errors.New("the upstream's redirect has no http(s) Location")}
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, loc.String(), nil)
	if err != nil {
		return &storageError{redact(err)}
	}
	for _, k := range followedHeaders {
		if v := req.Header.Values(k); len(v) > 0 {
			out.Header[k] = v
		}
	}
	if loc.Host == up.url.Host && loc.Scheme == up.url.Scheme {
		if v := req.Header.Get("Authorization"); v != "" {
			out.Header.Set("Authorization", v)
		}
	}
	// Blobs are compressed already; and a transparently decompressed body
	// would not match its digest.
	out.Header.Set("Accept-Encoding", "identity")
	sresp, err := storage.Do(out)
	if err != nil {
		return &storageError{redact(err)}
	}
	dcd := resp.Header.Get("Docker-Content-Digest")
	resp.Body.Close()
	resp.Status, resp.StatusCode = sresp.Status, sresp.StatusCode
	resp.Header, resp.Body, resp.Trailer = sresp.Header, sresp.Body, sresp.Trailer
	resp.ContentLength, resp.TransferEncoding, resp.Uncompressed = sresp.ContentLength, sresp.TransferEncoding, sresp.Uncompressed
	resp.Header.Del("Set-Cookie")
	if dcd != "" && resp.StatusCode < 300 && resp.Header.Get("Docker-Content-Digest") == "" {
		resp.Header.Set("Docker-Content-Digest", dcd)
	}
	return nil
}

// nsKey is the context key of the ?ns= a proxied request came with.
type nsKey struct{}

// rewriteLocation points upload and push Locations that name the upstream
// back at the proxy (keeping the client's ?ns=), so the client's next
// request comes through us. Redirects of reads (a 307 to object storage)
// are left alone.
func rewriteLocation(resp *http.Response, up *url.URL) {
	loc := resp.Header.Get("Location")
	if loc == "" || resp.Request == nil {
		return
	}
	switch resp.Request.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return
	}
	u, err := url.Parse(loc)
	if err != nil || (u.IsAbs() && u.Host != up.Host) || !strings.HasPrefix(u.Path, "/v2/") {
		return
	}
	u.Scheme, u.Host, u.User = "", "", nil
	if ns, ok := resp.Request.Context().Value(nsKey{}).(string); ok {
		q := u.Query()
		q.Set("ns", ns)
		u.RawQuery = q.Encode()
	}
	resp.Header.Set("Location", u.String())
}

// copyBufferSize is the size of ReverseProxy's body copy buffers. On
// loopback (25 MB blob, 2 cores) 32 KiB ran at ~0.6× direct, 256 KiB ~0.75×,
// 1 MiB ~0.9–1.0×. Each body in flight holds one, from a pool.
const copyBufferSize = 1 << 20

// copyBuffers is the pool of ReverseProxy's body copy buffers.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}}

// bufferPool adapts sync.Pool to httputil.BufferPool.
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte { return *b.pool.Get().(*[]byte) }

func (b *bufferPool) Put(p []byte) { b.pool.Put(&p) }
