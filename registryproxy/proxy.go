// Package registryproxy is a registry reverse proxy that serves 2DFS
// partitions: a pull of NAME:TAG--r1.c1.r2.c2 gets a manifest synthesized
// from NAME:TAG with only the selected allotments. Everything else passes
// through to one configured upstream registry untouched and streamed. See
// docs/proxy.md.
//
// It has no BuildKit imports on purpose: the proxy must stay small and start
// fast.
package registryproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/tdfs-kit/tdfs/exporter/partition"
)

// Options configure a Proxy.
type Options struct {
	// Upstream is the registry the proxy fronts, e.g.
	// https://registry.example.com. Requests without ?ns= go there.
	Upstream *url.URL

	// Mirrors enables containerd's mirror mode: containerd names the
	// registry it wants in ?ns=<host>, and the proxy serves it only if
	// the host is a key here, sending the request to the mapped URL. The
	// proxy never dials a host taken from a request.
	Mirrors map[string]*url.URL

	// Credentials authenticate the proxy to an upstream (keyed by the
	// upstream URL's host) on requests that carry no Authorization of
	// their own: Basic, or the registry token flow on a Bearer challenge.
	// Every client of the proxy then reads with these credentials; see
	// the mirror mode notes in docs/proxy.md.
	Credentials map[string]BasicAuth

	// Store keeps synthesized manifests and configs. Nil means an
	// in-memory store of DefaultMemoryStoreBytes.
	Store Store

	// ReadOnly refuses every request that is not GET or HEAD.
	ReadOnly bool

	// Transport reaches the upstream. Nil means a clone of
	// http.DefaultTransport with a response header timeout.
	Transport http.RoundTripper

	// BuildTimeout bounds the upstream round trips of one partition.
	// Zero means DefaultBuildTimeout.
	BuildTimeout time.Duration

	// AccessCacheTTL is how long a successful access check (the caller
	// could read the source manifest of a stored object) is trusted for
	// the same caller (by a hash of its Authorization), repository and
	// source, so that fetching stored objects by digest does not cost an
	// upstream round trip each. A revoked credential keeps reading those
	// objects for up to this long. Zero disables the cache: every
	// by-digest request is checked upstream.
	AccessCacheTTL time.Duration

	// PartitionReuse is how long a built partition answers repeated
	// requests for the same tag and selection: the proxy still sends one
	// upstream HEAD of the base tag with the caller's credentials and
	// Accept, and serves the stored partition without rebuilding when
	// the tag still points at the same source manifest. After this long
	// the next request builds and stores it again. A reuse needs every
	// object still in the store (a Redis store is asked, and renews their
	// TTL). Zero means DefaultPartitionReuse; negative disables reuse.
	PartitionReuse time.Duration

	// Limits cap what a synthesis reads from the upstream: manifest,
	// config and field blob sizes and index entries. Zero fields are
	// partition.DefaultLimits. A synthesis holds a small multiple of the
	// config cap in memory.
	Limits partition.Limits

	// MaxSyntheses bounds the partition syntheses that run at once; each
	// holds its source config and partition in memory. Zero means
	// DefaultMaxSyntheses().
	MaxSyntheses int

	// SynthesisQueue is how many more syntheses may wait for a slot (for
	// at most BuildTimeout); beyond that a partition request is answered
	// 503 with Retry-After. Zero means DefaultSynthesisQueue per slot;
	// negative means no queue.
	SynthesisQueue int

	// FollowBlobRedirects makes the proxy follow the upstream's redirects
	// of blob GETs and HEADs (registries behind object storage answer
	// with a 307 to a signed URL) and stream the blob from there itself,
	// instead of relaying the redirect to the client (the default). See
	// "Blob redirects" in docs/proxy.md for the trade-offs.
	FollowBlobRedirects bool

	// TagFreshness is how long a successful upstream HEAD of a repeated
	// partition tag's base tag (see PartitionReuse) holds for the same
	// caller (by a hash of its Authorization), repository, base tag,
	// selection and Accept: within it the stored partition is served
	// without asking upstream, so a moved tag or a revoked credential is
	// noticed up to this late. Zero disables it (a HEAD on every repeated
	// tag request). See fresh.go.
	TagFreshness time.Duration

	// Logger receives one line per request and the errors. Nil means
	// slog.Default().
	Logger *slog.Logger

	// Registry receives the proxy's metrics and is served on /metrics.
	// Nil means a new registry.
	Registry *prometheus.Registry
}

// BasicAuth is a user name and password for an upstream.
type BasicAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Defaults for Options.
const (
	DefaultMemoryStoreBytes = 64 << 20
	DefaultBuildTimeout     = 60 * time.Second
	// maxIdleUpstreamConns is how many idle connections to each upstream
	// the default transport keeps for the next request.
	maxIdleUpstreamConns = 64
)

// Proxy is an http.Handler; see the package documentation.
type Proxy struct {
	def       *upstream
	mirrors   map[string]*upstream
	store     Store
	readOnly  bool
	follow    bool
	timeout   time.Duration
	log       *slog.Logger
	flight    singleflight.Group
	metrics   *metrics
	metricsH  http.Handler
	upstreams []*upstream
	admit     *admission
	limits    partition.Limits
	// access holds successful access checks (nil when disabled).
	access *ttlCache[struct{}]
	// parts maps a tag request (upstream, repository, base tag,
	// selection, Accept) to the partition last built for it (nil when
	// reuse is disabled).
	parts *ttlCache[builtPartition]
	// fresh holds the repeated tags served without an upstream HEAD
	// (nil when TagFreshness is zero).
	fresh *ttlCache[struct{}]
}

// New validates opts and returns a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Upstream == nil && len(opts.Mirrors) == 0 {
		return nil, errors.New("registryproxy: no upstream and no mirrors")
	}
	p := &Proxy{
		store:    opts.Store,
		readOnly: opts.ReadOnly,
		follow:   opts.FollowBlobRedirects,
		timeout:  opts.BuildTimeout,
		log:      opts.Logger,
		mirrors:  map[string]*upstream{},
		limits:   opts.Limits.OrDefault(),
	}
	if p.store == nil {
		p.store = NewMemoryStore(DefaultMemoryStoreBytes)
	}
	if p.timeout <= 0 {
		p.timeout = DefaultBuildTimeout
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if opts.AccessCacheTTL > 0 {
		p.access = newTTLCache[struct{}](opts.AccessCacheTTL, accessCacheEntries)
	}
	if opts.TagFreshness > 0 {
		p.fresh = newTTLCache[struct{}](opts.TagFreshness, partitionCacheEntries)
	}
	switch reuse := opts.PartitionReuse; {
	case reuse == 0:
		p.parts = newTTLCache[builtPartition](DefaultPartitionReuse, partitionCacheEntries)
	case reuse > 0:
		p.parts = newTTLCache[builtPartition](reuse, partitionCacheEntries)
	}
	transport := opts.Transport
	if transport == nil {
		transport = upstreamTransport()
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var err error
	if p.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	slots, queue := opts.MaxSyntheses, opts.SynthesisQueue
	if slots <= 0 {
		slots = DefaultMaxSyntheses()
	}
	switch {
	case queue == 0:
		queue = DefaultSynthesisQueue * slots
	case queue < 0:
		queue = 0
	}
	if p.admit, err = newAdmission(reg, slots, queue); err != nil {
		return nil, err
	}
	p.metricsH = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if mem := memoryStoreOf(p.store); mem != nil {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tdfs_proxy_memory_store_bytes",
			Help: "Bytes of synthesized objects held in memory.",
		}, func() float64 { return float64(mem.Bytes()) })); err != nil {
			return nil, err
		}
	}

	// A failure matters for as long as the longest window that asks
	// about it.
	failureWindow := max(opts.AccessCacheTTL, opts.TagFreshness)
	mk := func(u *url.URL) (*upstream, error) {
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("registryproxy: upstream %q is not an http(s) URL with a host", u)
		}
		t := transport
		if c, ok := opts.Credentials[u.Host]; ok {
			t = newCredentialTransport(transport, u, c)
		}
		up := &upstream{url: u, client: &http.Client{Transport: t, CheckRedirect: checkRedirect}, failures: newFailures(failureWindow)}
		up.rp = p.reverseProxy(up, t)
		p.upstreams = append(p.upstreams, up)
		return up, nil
	}
	if opts.Upstream != nil {
		if p.def, err = mk(opts.Upstream); err != nil {
			return nil, err
		}
	}
	for host, u := range opts.Mirrors {
		if p.mirrors[host], err = mk(u); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// upstreamTransport is the transport to upstreams when Options.Transport
// is nil.
func upstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Only the wait for response headers is bounded: a blob body may
	// take as long as it takes, so there is no overall timeout.
	t.ResponseHeaderTimeout = 2 * time.Minute
	// Blob bodies are copied through ReverseProxy's buffer (below);
	// larger socket-side buffers save syscalls on uploads too.
	t.ReadBufferSize, t.WriteBufferSize = 64<<10, 64<<10
	// Keep a connection per concurrent pull: with net/http's default
	// of 2 idle connections per host, 8 clients pulling layers at
	// once closed 6 of their 8 upstream connections after every
	// layer and dialled again, a handshake and TCP slow start over
	// the link each time (TestPassThroughKeepsUpstreamConnections).
	// An idle connection holds its two 64 KiB buffers: 8 MiB per
	// upstream at most.
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 0, maxIdleUpstreamConns
	// HTTP/1.1 only. net/http speaks HTTP/2 to a TLS registry that
	// offers it (they all do), and then carries every concurrent blob on
	// one connection, copying each DATA frame once more through the
	// stream's buffer; over HTTP/1.1 each blob has a connection of its
	// own and is read straight into the copy buffer. Measured on a veth
	// link against an HTTPS registry (docs/benchmarks.md, experiment 8
	// with -link-tls), HTTP/1.1 relayed faster where the link was not the
	// bottleneck, and the same at 1 Gbit/s.
	var h1 http.Protocols
	h1.SetHTTP1(true)
	t.Protocols = &h1
	// DefaultTransport, once used, has a TLS config offering h2 (net/http
	// sets it up on first use), and a clone copies it: the registry would
	// then answer in HTTP/2 a client speaking HTTP/1.1. DefaultTransport
	// has no other TLS settings.
	t.TLSClientConfig = nil
	return t
}
