package registryproxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// With one slot and one place in the queue, a third distinct synthesis is
// refused at once with 503 and Retry-After; a request for the tag being
// built joins that build without taking a slot; everything admitted ends
// in 200 once the upstream answers.
func TestSynthesisAdmission(t *testing.T) {
	gate := make(chan struct{})
	var configGets atomic.Int32
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				configGets.Add(1)
				<-gate // a slow upstream: configs come when the test says
			}
			h.ServeHTTP(w, r)
		})
	}, func(o *Options) { o.MaxSyntheses, o.SynthesisQueue = 1, 1 })
	// Registered after the servers' Close, so it runs before them: a
	// failing test must not leave handlers waiting.
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open)
	push(t, e.registry.URL, "app", "v1", partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...))

	get := func(sel string) <-chan response {
		ch := make(chan response, 1)
		go func() { ch <- do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--"+sel, nil) }()
		return ch
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	first := get("0.0.0.0")
	waitFor("the first synthesis to reach the upstream", func() bool { return configGets.Load() == 1 })
	second := get("0.1.0.1")
	waitFor("the second synthesis to queue", func() bool { return value(e.p.admit.queued) == 1 })
	if got := value(e.p.admit.inFlight); got != 1 {
		t.Errorf("in flight %v, want 1", got)
	}

	var third response
	select {
	case third = <-get("1.0.1.0"):
	case <-time.After(5 * time.Second):
		t.Fatal("a third distinct synthesis beyond the slot and the queue was not refused at once")
	}
	if third.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third distinct synthesis: %s %s, want 503", third.Status, third.body)
	}
	if s, err := strconv.Atoi(third.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", third.Header.Get("Retry-After"))
	}
	if c := third.ociError(); !strings.HasPrefix(c, "UNAVAILABLE: ") || !strings.Contains(c, "retry later") {
		t.Errorf("error %s", c)
	}
	if got := value(e.p.metrics.builds.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected builds %v, want 1", got)
	}

	// Same tag, selection and credentials as the first: it joins it. Had
	// it needed a slot of its own, it would be refused like the third.
	joiner := get("0.0.0.0")
	select {
	case r := <-joiner:
		t.Fatalf("a request joining a running synthesis was answered %s %s before it finished", r.Status, r.body)
	case <-time.After(300 * time.Millisecond):
	}

	open()
	for name, ch := range map[string]<-chan response{"first": first, "second": second, "joiner": joiner} {
		if r := <-ch; r.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %s", name, r.Status, r.body)
		}
	}
	if n := configGets.Load(); n != 2 {
		t.Errorf("%d config GETs, want 2 (the joiner shares the first)", n)
	}
	waitFor("the gauges to drop", func() bool {
		return value(e.p.admit.inFlight) == 0 && value(e.p.admit.queued) == 0
	})
	// The metrics are served.
	m := do(t, http.MethodGet, e.proxy.URL+"/metrics", nil)
	for _, want := range []string{"tdfs_proxy_partition_builds_in_flight 0", "tdfs_proxy_partition_builds_queued 0", `tdfs_proxy_partition_builds_total{result="rejected"} 1`} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// A synthesis that waits in the queue until its time is up is refused as
// busy, and leaves the queue.
func TestSynthesisQueueTimeout(t *testing.T) {
	a, err := newAdmission(prometheus.NewRegistry(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	release, err := a.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.acquire(ctx); !errors.Is(err, errBusy) {
		t.Errorf("queued past its deadline: %v, want errBusy", err)
	}
	if q := value(a.queued); q != 0 {
		t.Errorf("%v queued after the wait ended", q)
	}
	release()
	if release, err = a.acquire(context.Background()); err != nil {
		t.Errorf("the slot was not given back: %v", err)
	}
	release()
	if n := value(a.inFlight); n != 0 {
		t.Errorf("%v in flight", n)
	}
}

// value reads a gauge or counter.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// The size caps are options: lowered, an image over them is a 502 naming
// what was too large; raised, a config over the default cap partitions.
func TestSynthesisLimits(t *testing.T) {
	small := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	big := partitiontest.Large(ocispec.MediaTypeImageManifest, 1, partition.MaxConfigBytes+1, partitiontest.PadLabel, grid...)
	index, _ := partitiontest.Index(ocispec.MediaTypeImageIndex,
		partitiontest.Platform{Image: small, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}},
		partitiontest.Platform{Image: small, Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	for _, c := range []struct {
		name   string
		limits partition.Limits
		img    *partitiontest.Image
		index  []byte
		status int
		want   string
	}{
		{"config over a lowered cap", partition.Limits{ConfigBytes: 100}, small, nil, http.StatusBadGateway, "over the limit of 100"},
		{"manifest over a lowered cap", partition.Limits{ManifestBytes: 100}, small, nil, http.StatusBadGateway, "is over 100 bytes"},
		{"index over a lowered entry cap", partition.Limits{IndexManifests: 1}, small, index, http.StatusBadGateway, "index has 2 manifests"},
		{"config over the default cap", partition.Limits{}, big, nil, http.StatusBadGateway, "is 16777217 bytes, over the limit of 16777216"},
		{"config under a raised cap", partition.Limits{ConfigBytes: partition.MaxConfigBytes + 1}, big, nil, http.StatusOK, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil, func(o *Options) { o.Limits = c.limits })
			push(t, e.registry.URL, "app", "v1", c.img)
			if c.index != nil {
				pushManifest(t, e.registry.URL, "app", "v1", ocispec.MediaTypeImageIndex, c.index)
			}
			r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.0.0", nil)
			if r.StatusCode != c.status || !strings.Contains(r.ociError(), c.want) {
				t.Errorf("%s: %s", r.Status, r.ociError())
			}
		})
	}
}
