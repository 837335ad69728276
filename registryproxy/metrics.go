package registryproxy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	requests     *prometheus.CounterVec
	builds       *prometheus.CounterVec
	buildSeconds prometheus.Histogram
	storeLookups *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tdfs_proxy_requests_total",
			Help: "Requests by route (partition, stored, passthrough, denied, health), method and status code.",
		}, []string{"route", "method", "code"}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tdfs_proxy_partition_builds_total",
			Help: "Partition builds (upstream fetch and rewrite) by result; concurrent identical requests share one build.",
		}, []string{"result"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tdfs_proxy_partition_build_seconds",
			Help:    "Time to build a partition, upstream round trips included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		storeLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tdfs_proxy_store_lookups_total",
			Help: "By-digest lookups of synthesized objects, hit or miss.",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.builds, m.buildSeconds, m.storeLookups} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// The Go runtime (go_goroutines, go_memstats_*) and the process
	// (process_resident_memory_bytes, process_open_fds): what an
	// operator watches first under load. A caller's registry may have
	// them already.
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, err
		}
	}
	return m, nil
}
