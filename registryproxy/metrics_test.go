package registryproxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// TestRuntimeMetrics: /metrics has the Go runtime and process collectors,
// also when the caller's registry already has them.
func TestRuntimeMetrics(t *testing.T) {
	own := prometheus.NewRegistry()
	own.MustRegister(collectors.NewGoCollector())
	for name, reg := range map[string]*prometheus.Registry{"new": nil, "caller's": own} {
		p, err := New(Options{Upstream: mustURL("http://registry.invalid"), Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("%s registry: %v", name, err)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{"\ngo_goroutines ", "\ngo_memstats_heap_inuse_bytes ", "\nprocess_resident_memory_bytes ", "\nprocess_open_fds "} {
			if !strings.Contains(w.Body.String(), want) {
				t.Errorf("%s registry: /metrics lacks %q", name, strings.TrimSpace(want))
			}
		}
	}
}
