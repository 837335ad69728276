package llb

import (
	"fmt"

	bkllb "github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// fetchedName is the file name every URL source is saved under before it is
// copied to its dst. BuildKit's HTTP source keys its cache on the checksum
// and this name, so one name for all lets the same bytes behind two URLs
// (a mirror, a re-signed URL) share one download.
const fetchedName = "file"

// fetchedMode is the mode of the downloaded file; the copy then normalizes
// it like any other file (NormalMode).
const fetchedMode = 0o644

// sourceState returns the state an allotment's paths are read in: the build
// context, or the image or named context its "from" names.
func sourceState(a descriptor.PlannedAllotment, opt Options) (bkllb.State, error) {
	if a.From == "" {
		return opt.Context, nil
	}
	st, ok := opt.From[a.From]
	if !ok {
		return bkllb.State{}, fmt.Errorf("allotment %s reads from %q, which the build did not load", a.Cell, a.From)
	}
	return st, nil
}

// copySource returns the state and path a copy reads: for a URL, the file
// BuildKit's HTTP source fetched (on buildkitd, never through the client);
// for a path, the path in src.
func copySource(a descriptor.PlannedAllotment, c descriptor.Copy, src bkllb.State) (bkllb.State, string) {
	if c.URL == "" {
		return src, "/" + c.Src
	}
	return FetchState(a, c), "/" + fetchedName
}

// FetchState is the HTTP source of one URL copy: pinned by its checksum,
// authorized by the allotment's secret, named by the redacted URL so no
// credential shows in progress output.
func FetchState(a descriptor.PlannedAllotment, c descriptor.Copy) bkllb.State {
	opts := []bkllb.HTTPOption{
		bkllb.Filename(fetchedName),
		bkllb.Chmod(fetchedMode),
		bkllb.WithCustomName(fmt.Sprintf("[2dfs %s] fetch %s", a.Cell, c.Src)),
	}
	if c.Checksum != "" {
		opts = append(opts, bkllb.Checksum(digest.Digest(c.Checksum)))
	}
	if a.AuthSecret != "" {
		opts = append(opts, bkllb.AuthHeaderSecret(a.AuthSecret))
	}
	return bkllb.HTTP(c.URL, opts...)
}
