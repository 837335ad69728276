package registryproxy

// Outage tracking: when the upstream, or one repository of it, last failed
// the proxy's own requests. Cached access checks and fresh repeated tags
// are not used for a while after such a failure, so an outage answers
// 502/504 for stored objects too, as for everything else.

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxFailedRepositories bounds the repositories remembered as failing per
// upstream. More failing at once than that is taken as an outage of the
// whole upstream: it is what a registry answering 5xx for everything
// looks like, and remembering them all would let a client grow the map.
const maxFailedRepositories = 1024

// failures records upstream failures of two kinds (issue 11):
//   - the upstream could not be reached (connection errors, timeouts):
//     every repository is affected, so the whole upstream counts as down;
//   - the upstream answered a 5xx to the proxy's own request (an access
//     check, a partition build) for one repository: only that repository
//     counts as down. A client can provoke a 5xx for a repository of its
//     choosing (a tag of one the registry cannot read), and must not be
//     able to switch off cached access checks for everyone else.
type failures struct {
	all atomic.Int64 // Unix nanoseconds of the last upstream-wide failure
	// keep is the longest window failedWithin is asked about: older
	// repository entries are dropped when the map is full.
	keep time.Duration
	now  func() time.Time

	mu    sync.Mutex
	repos map[string]int64 // repository -> Unix nanoseconds of its last failure
}

func newFailures(keep time.Duration) *failures {
	return &failures{keep: keep, now: time.Now, repos: map[string]int64{}}
}

// failed records that the upstream could not be reached.
func (f *failures) failed() { f.all.Store(f.now().UnixNano()) }

// failedRepository records a 5xx for the proxy's own request about name.
func (f *failures) failedRepository(name string) {
	now := f.now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.repos[name]; !ok && len(f.repos) >= maxFailedRepositories {
		for n, at := range f.repos {
			if now-at >= int64(f.keep) {
				delete(f.repos, n)
			}
		}
		if len(f.repos) >= maxFailedRepositories {
			f.all.Store(now)
			return
		}
	}
	f.repos[name] = now
}

// failedWithin reports whether the upstream as a whole, or repository name
// of it, failed in the last d.
func (f *failures) failedWithin(name string, d time.Duration) bool {
	now := f.now().UnixNano()
	if now-f.all.Load() < int64(d) {
		return true
	}
	f.mu.Lock()
	at, ok := f.repos[name]
	f.mu.Unlock()
	return ok && now-at < int64(d)
}
