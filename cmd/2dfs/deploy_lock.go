package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/frontend"
)

// deployLock is a deploy's lock file (docs/cir.md, "Lock files"): read
// before the solve, written after the image is made.
type deployLock struct {
	file string
	// lock is what the file holds (nil when absent) or the new lock.
	lock *cir.Lock
	// was are the file's bytes when it was read.
	was []byte
}

// openLock reads FILE for a deploy of req for target and sets req.Lock:
// the target's pinned closure when the lock has one and update is false. A
// lock made for another CIR is refused unless update is set, which starts
// it afresh for this CIR.
func openLock(file string, update bool, req *frontend.DeployRequest, target ocispec.Platform) (*deployLock, error) {
	if file == "" {
		if update {
			return nil, fmt.Errorf("--lock-update needs --lock FILE")
		}
		return nil, nil
	}
	dl := &deployLock{file: file}
	lock, err := cir.ReadLock(file)
	if err != nil {
		return nil, err
	}
	if lock != nil {
		dl.was, _ = lock.Encode()
	}
	inputs := cir.InputsOf(req.Record)
	if lock != nil {
		if err := lock.Inputs.Check(file, inputs); err != nil {
			if !update {
				return nil, err
			}
			// The other platforms were resolved for other inputs.
			fmt.Fprintf(os.Stderr, "2dfs deploy: %v: starting it afresh for this CIR (--lock-update)\n", err)
			lock = nil
		}
	}
	if lock == nil {
		lock = &cir.Lock{Version: cir.LockVersion, Inputs: inputs}
	}
	dl.lock = lock
	req.Lock = &frontend.DeployLock{}
	if !update {
		req.Lock.Pinned = lock.Platform(platforms.Format(platforms.Normalize(target)))
	}
	return dl, nil
}

// save writes the closure the deploy assembled into the lock file, keeping
// the other platforms' entries; it leaves an unchanged file alone.
func (dl *deployLock) save(req frontend.DeployRequest) error {
	if dl == nil {
		return nil
	}
	if req.Lock.Assembled == nil {
		return fmt.Errorf("lock %s: the deploy reported no closure", dl.file)
	}
	dl.lock.Set(*req.Lock.Assembled)
	data, err := dl.lock.Encode()
	if err != nil {
		return fmt.Errorf("lock %s: %w", dl.file, err)
	}
	if bytes.Equal(data, dl.was) {
		return nil
	}
	return cir.WriteLock(dl.file, dl.lock)
}
