package registryproxy

// Routing: which requests the proxy answers itself (health, metrics,
// partition tags, synthesized objects by digest) and which pass through.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/tdfs-kit/tdfs/field"
)

// Routes of /v2/ requests: see routes.go.
var (
	// nameRE is the distribution spec's repository name grammar. Names
	// the proxy puts into its own upstream URLs must match it.
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
)

// ServeHTTP routes: health and metrics, partition tags, synthesized objects
// by digest, and everything else to the upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	route := p.serve(rec, r)
	elapsed := time.Since(start)
	p.metrics.requests.WithLabelValues(route, r.Method, fmt.Sprint(rec.status)).Inc()
	if route == "health" {
		return
	}
	// Path only: queries can hold signed-URL credentials, and
	// Authorization is never logged.
	p.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", route,
		"status", rec.status, "bytes", rec.bytes, "duration", elapsed)
}

// serve handles r and returns the route name for metrics and logs.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) string {
	switch r.URL.Path {
	case "/livez":
		_, _ = w.Write([]byte("ok\n"))
		return "health"
	case "/readyz":
		p.serveReady(w, r)
		return "health"
	case "/metrics":
		p.metricsH.ServeHTTP(w, r)
		return "health"
	}
	if r.URL.Path != "/v2" && !strings.HasPrefix(r.URL.Path, "/v2/") {
		writeError(w, http.StatusNotFound, codeUnsupported, "not a registry API path")
		return "denied"
	}
	up, err := p.upstreamFor(r)
	if err != nil {
		writeError(w, http.StatusForbidden, codeDenied, err.Error())
		return "denied"
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if p.readOnly && !read {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "this registry proxy is read-only")
		return "denied"
	}

	rt, r, ok := p.route(w, r) // only API paths, in canonical form (routes.go)
	if !ok {
		return "denied"
	}
	if rt.kind != routeManifests && rt.kind != routeBlobs {
		up.rp.ServeHTTP(w, r)
		return "passthrough"
	}
	name, kind, ref := rt.name, rt.kind, rt.ref
	if kind == "manifests" && field.IsPartitionTag(ref) {
		if !read {
			writeError(w, http.StatusForbidden, codeDenied, fmt.Sprintf("%s is a partition tag: partitions are synthesized by the proxy from the base tag and cannot be pushed or deleted", ref))
			return "denied"
		}
		if !nameRE.MatchString(name) {
			writeError(w, http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("invalid repository name %q", name))
			return "denied"
		}
		p.servePartition(w, r, up, name, ref)
		return "partition"
	}
	if read && strings.Contains(ref, ":") && nameRE.MatchString(name) {
		if p.serveStored(w, r, up, name, kind, ref) {
			return "stored"
		}
	}
	up.rp.ServeHTTP(w, r)
	return "passthrough"
}

// upstreamFor picks the upstream of r: the ?ns= mirror if the request names
// one, else the default.
func (p *Proxy) upstreamFor(r *http.Request) (*upstream, error) {
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		if p.def == nil {
			return nil, errors.New("this proxy only serves as a mirror: the request needs ?ns=<registry>")
		}
		return p.def, nil
	}
	if up, ok := p.mirrors[ns]; ok {
		return up, nil
	}
	if p.def != nil && ns == p.def.url.Host {
		return p.def, nil
	}
	return nil, fmt.Errorf("registry %q is not on this proxy's mirror allowlist", ns)
}

// serveReady answers 200 when every upstream answers its /v2/ endpoint
// (401 counts: the registry is up and wants credentials) and a shared store
// (Redis) answers.
func (p *Proxy) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if ps, ok := p.store.(pinger); ok {
		if err := ps.Ping(ctx); err != nil {
			p.log.Warn("store not ready", "err", err)
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	for _, up := range p.upstreams {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, up.url.JoinPath("/v2/").String(), nil)
		if err != nil {
			http.Error(w, "bad upstream URL", http.StatusServiceUnavailable)
			return
		}
		resp, err := up.client.Do(req)
		if err != nil {
			http.Error(w, "upstream "+up.url.Host+" unreachable", http.StatusServiceUnavailable)
			return
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			http.Error(w, "upstream "+up.url.Host+" answered "+resp.Status, http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// statusRecorder remembers the status and size of a response. Unwrap lets
// http.ResponseController (used by ReverseProxy to flush) reach the real
// writer.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote && code >= 200 {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ReadFrom keeps the underlying writer's io.ReaderFrom (net/http's uses
// sendfile for files and a pooled buffer otherwise) visible through the
// recorder, for io.Copy callers such as http.ServeContent.
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	s.wrote = true
	var n int64
	var err error
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{s.ResponseWriter}, src)
	}
	s.bytes += n
	return n, err
}

// writerOnly hides every method but Write, so io.Copy does not loop back
// into ReadFrom.
type writerOnly struct{ io.Writer }
