package registryproxy

// Admission of partition syntheses: a synthesis holds the source config
// and its partition in memory (a small multiple of the config, which may
// be up to MaxConfigBytes), so only so many run at once, a bounded number
// wait, and the rest are told to come back later. Requests that join a
// synthesis already under way (same tag, selection, Accept, credentials)
// share it and take no slot.

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxSyntheses is the default limit of concurrent syntheses: one per
// CPU the Go runtime uses, at least 2. A large config keeps a synthesis on
// a CPU (scanning, hashing), so more would add memory, not speed; one that
// waits on the upstream waits in a slot, which is what the queue is for.
func DefaultMaxSyntheses() int { return max(2, runtime.GOMAXPROCS(0)) }

// DefaultSynthesisQueue is the default number of syntheses that may wait
// for a slot, per slot. A waiting synthesis holds nothing but its request,
// so the queue is long: it turns bursts into latency rather than 503s.
const DefaultSynthesisQueue = 32

// errBusy is a synthesis refused because every slot and every place in
// the queue is taken, or it waited in the queue until its time was up.
var errBusy = errors.New("too many partitions being built; retry later")

type admission struct {
	slots chan struct{}
	queue chan struct{}
	// avgNanos is a moving average of synthesis durations, for
	// Retry-After.
	avgNanos atomic.Int64

	inFlight, queued prometheus.Gauge
}

func newAdmission(reg prometheus.Registerer, slots, queue int) (*admission, error) {
	a := &admission{
		slots: make(chan struct{}, slots),
		queue: make(chan struct{}, queue),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tdfs_proxy_partition_builds_in_flight",
			Help: "Partition syntheses running now (at most -max-syntheses).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tdfs_proxy_partition_builds_queued",
			Help: "Partition syntheses waiting for a slot (at most -synthesis-queue).",
		}),
	}
	for _, c := range []prometheus.Collector{a.inFlight, a.queued} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// acquire takes a slot, waiting in the queue if there is room there, until
// ctx is done. It returns errBusy when there is no room or the wait ran
// out, and the function that gives the slot back otherwise.
func (a *admission) acquire(ctx context.Context) (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
		return a.started(), nil
	default:
	}
	select {
	case a.queue <- struct{}{}:
	default:
		return nil, errBusy
	}
	a.queued.Inc()
	defer func() {
		<-a.queue
		a.queued.Dec()
	}()
	select {
	case a.slots <- struct{}{}:
		return a.started(), nil
	case <-ctx.Done():
		return nil, errBusy
	}
}

func (a *admission) started() func() {
	a.inFlight.Inc()
	start := time.Now()
	return func() {
		a.observe(time.Since(start))
		a.inFlight.Dec()
		<-a.slots
	}
}

// observe folds a synthesis duration into the moving average (weight 1/8).
func (a *admission) observe(d time.Duration) {
	for {
		old := a.avgNanos.Load()
		n := int64(d)
		if old != 0 {
			n = old + (int64(d)-old)/8
		}
		if a.avgNanos.CompareAndSwap(old, n) {
			return
		}
	}
}

// retryAfter is the Retry-After, in seconds, of a refused synthesis: about
// how long it takes the syntheses queued ahead to get through the slots,
// between 1 and 60 seconds.
func (a *admission) retryAfter() int {
	waves := float64(len(a.queue)+len(a.slots)) / float64(cap(a.slots))
	s := math.Ceil(time.Duration(a.avgNanos.Load()).Seconds() * max(waves, 1))
	return int(min(max(s, 1), 60))
}
