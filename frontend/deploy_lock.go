package frontend

import (
	"fmt"

	"github.com/tdfs-kit/tdfs/cir"
)

// DeployLock connects a deploy to a lock file (docs/cir.md, "Lock files"):
// the caller reads the file and sets Pinned, Deploy assembles exactly that
// closure without resolving, and reports what it assembled in Assembled for
// the caller to write back. Deploy runs in the caller's process (2dfs
// deploy's build function), so it can hand the closure back this way.
type DeployLock struct {
	// Pinned is the target platform's closure from the lock; nil resolves
	// fresh.
	Pinned *cir.LockPlatform
	// Assembled is set by Deploy to the closure of the image it made.
	Assembled *cir.LockPlatform
}

// pinned returns the locked closure, or nil when the deploy resolves.
func (l *DeployLock) pinned() *cir.LockPlatform {
	if l == nil {
		return nil
	}
	return l.Pinned
}

// pinnedDebs returns the locked apt closure, ok false when there is no lock
// entry to take it from.
func (l *DeployLock) pinnedDebs() ([]cir.Deb, bool) {
	p := l.pinned()
	if p == nil {
		return nil, false
	}
	debs, _ := p.Closure()
	return debs, true
}

// pinnedWheels returns the locked wheels, refusing a lock made for another
// interpreter than the base's (which a lock for the same base by digest
// cannot be, unless edited by hand).
func (l *DeployLock) pinnedWheels(interp cir.Interpreter) ([]cir.Wheel, bool, error) {
	p := l.pinned()
	if p == nil {
		return nil, false, nil
	}
	if p.Python != interp.Version {
		return nil, false, fmt.Errorf("the lock's wheels for %s were resolved for Python %s, but the base has Python %s; re-resolve with --lock-update", p.Platform, p.Python, interp.Version)
	}
	_, wheels := p.Closure()
	return wheels, true, nil
}

// record keeps the assembled closure for the caller.
func (l *DeployLock) record(platform string, interp cir.Interpreter, debs []cir.Deb, wheels []cir.Wheel) {
	if l == nil {
		return
	}
	e := cir.NewLockPlatform(platform, interp.Version, debs, wheels)
	l.Assembled = &e
}
