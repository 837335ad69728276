package frontend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/containerd/platforms"
	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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

// contextLock reads the lock file a deploy descriptor names ("lock") from the
// build context, with 2dfs deploy --lock's limit and validation, and returns
// each target's pinned closure. The frontend only reads locks (it cannot
// write the client's files): a lock it cannot follow (absent, for another
// CIR, without an entry for a target) is an error that says which 2dfs
// deploy command makes or updates it; ref names the CIR in that command.
func contextLock(ctx context.Context, c client.Client, bc *dockerui.Client, file string, req DeployRequest, targets []ocispec.Platform, ref string) ([]*DeployLock, error) {
	var plats []string
	for _, p := range targets {
		plats = append(plats, platforms.Format(p))
	}
	deployCmd := func(update string, ps []string) string {
		return fmt.Sprintf("2dfs deploy %s --platform %s --lock %s%s", ref, strings.Join(ps, ","), file, update)
	}
	main, err := bc.MainContext(ctx, bkllb.FollowPaths([]string{file}))
	if err != nil {
		return nil, err
	}
	def, err := main.Marshal(ctx, bkllb.WithCaps(c.BuildOpts().LLBCaps))
	if err != nil {
		return nil, err
	}
	res, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB()})
	if err != nil {
		return nil, rpcError("lock %s: read the build context: %v", file, err)
	}
	src, err := res.SingleRef()
	if err != nil {
		return nil, err
	}
	st, err := contextLookup(ctx, src)(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("lock %s: no such file in the build context (or .dockerignore excludes it); the frontend reads a lock and cannot write one: make it with %s", file, deployCmd("", plats))
	case err != nil:
		return nil, rpcError("lock %s: %v", file, err)
	case fs.FileMode(st.Mode).IsDir():
		return nil, fmt.Errorf("lock %s: a folder in the build context, not a lock file", file)
	}
	if st.Size > cir.MaxLockBytes {
		return nil, fmt.Errorf("lock %s: %d bytes, over the %d byte limit", file, st.Size, cir.MaxLockBytes)
	}
	data, err := readBounded(ctx, src, file, cir.MaxLockBytes+1)
	if err != nil {
		return nil, rpcError("lock %s: %v", file, err)
	}
	lock, err := cir.DecodeLock(file, data)
	if err != nil {
		return nil, err
	}
	if err := lock.Inputs.Check(file, cir.InputsOf(req.Record)); err != nil {
		return nil, fmt.Errorf("%w; the frontend only reads locks: %s", err, deployCmd(" --lock-update", plats))
	}
	var out []*DeployLock
	var missing []string
	for _, p := range plats {
		e := lock.Platform(p)
		if e == nil {
			missing = append(missing, p)
		}
		out = append(out, &DeployLock{Pinned: e})
	}
	if len(missing) > 0 {
		var has []string
		for _, e := range lock.Platforms {
			has = append(has, e.Platform)
		}
		if len(has) == 0 {
			has = []string{"none"}
		}
		return nil, fmt.Errorf("lock %s has no entry for %s (it has %s); the frontend reads a lock and cannot add to it: add them with %s",
			file, strings.Join(missing, ", "), strings.Join(has, ", "), deployCmd("", missing))
	}
	return out, nil
}

// readChunk is what readBounded asks for at once: a gateway message is at
// most 16 MiB, so one read of a lock at the limit (16 MiB) would fail.
const readChunk = 4 << 20

// readBounded reads up to limit bytes of a file in a reference, in chunks,
// stopping at its end: a file that grew past its stat is still cut at the
// limit, for DecodeLock to refuse.
func readBounded(ctx context.Context, ref client.Reference, file string, limit int) ([]byte, error) {
	var data []byte
	for len(data) < limit {
		n := min(readChunk, limit-len(data))
		chunk, err := ref.ReadFile(ctx, client.ReadRequest{Filename: file, Range: &client.FileRange{Offset: len(data), Length: n}})
		if err != nil {
			return nil, err
		}
		data = append(data, chunk...)
		if len(chunk) < n {
			break
		}
	}
	return data, nil
}
