package frontend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/reference"
	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// fromPaths lists, per "from" name, the paths allotments read in it, so a
// named local context transfers only those, as the main context does.
func fromPaths(desc *descriptor.Descriptor) map[string][]string {
	out := map[string][]string{}
	for _, a := range desc.Allotments {
		if a.From == "" {
			continue
		}
		for _, s := range a.Src {
			out[a.From] = append(out[a.From], strings.TrimPrefix(strings.TrimPrefix(s, "/"), "./"))
		}
	}
	for name, srcs := range out {
		slices.Sort(srcs)
		out[name] = slices.Compact(srcs)
	}
	return out
}

// loadFrom returns, for one platform, the state of every image or named
// context the allotments read with "from". A named build context of that
// name wins, as with Dockerfile COPY --from; otherwise the name is an image,
// read for the target platform.
func loadFrom(ctx context.Context, bc *dockerui.Client, desc *descriptor.Descriptor, p ocispec.Platform) (map[string]bkllb.State, error) {
	paths := fromPaths(desc)
	if len(paths) == 0 {
		return nil, nil
	}
	out := make(map[string]bkllb.State, len(paths))
	for name, srcs := range paths {
		opt := dockerui.ContextOpt{Platform: &p, ResolveMode: bc.ImageResolveMode.String()}
		if !slices.ContainsFunc(srcs, func(s string) bool { return s == "" || s == "." }) {
			opt.AsyncLocalOpts = func() []bkllb.LocalOption { return []bkllb.LocalOption{bkllb.FollowPaths(srcs)} }
		}
		nc, err := bc.NamedContext(name, opt)
		if err != nil {
			return nil, err
		}
		if nc != nil {
			st, _, err := nc.Load(ctx)
			if err != nil {
				return nil, rpcError("build context %q: %v", name, err)
			}
			out[name] = *st
			continue
		}
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			return nil, fmt.Errorf("from %q: not a valid image reference: %w", name, err)
		}
		named = reference.TagNameOnly(named)
		out[name] = bkllb.Image(named.String(), bkllb.Platform(p), bc.ImageResolveMode,
			bkllb.WithCustomName(fmt.Sprintf("[2dfs] from %s for %s", reference.FamiliarString(named), platformString(p))))
	}
	return out, nil
}

// fromStat returns a descriptor.StatFromFunc that solves each image or
// named context once, on first use, and checks paths in it like sources in
// the build context.
func fromStat(ctx context.Context, c client.Client, states map[string]bkllb.State, cacheImports []client.CacheOptionsEntry, warn func(string)) descriptor.StatFromFunc {
	checkers := map[string]*sourceChecker{}
	failed := map[string]error{}
	return func(from, src string) (fs.FileMode, error) {
		if err := failed[from]; err != nil {
			return 0, err
		}
		sc, ok := checkers[from]
		if !ok {
			st, ok := states[from]
			if !ok {
				return 0, fmt.Errorf("%q was not loaded", from)
			}
			ref, err := solveRef(ctx, c, st, cacheImports)
			if err != nil {
				failed[from] = err
				return 0, err
			}
			sc = newSourceChecker(ctx, ref, maxWalkFolders, warn)
			checkers[from] = sc
		}
		return sc.stat(src)
	}
}

func solveRef(ctx context.Context, c client.Client, st bkllb.State, cacheImports []client.CacheOptionsEntry) (client.Reference, error) {
	def, err := st.Marshal(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), CacheImports: cacheImports})
	if err != nil {
		return nil, errors.New(descriptor.RedactText(err.Error()))
	}
	return r.SingleRef()
}

// planPlatform is the platform "from" images are read for while planning:
// the first target. Which paths an image holds does not vary by platform in
// any image a field would read from.
func planPlatform(bc *dockerui.Client) ocispec.Platform {
	if len(bc.TargetPlatforms) > 0 {
		return bc.TargetPlatforms[0]
	}
	return targetPlatform(nil)
}

// explainSolve names, in a failed build's error, the allotment and source
// whose vertex failed (a wrong checksum, a 404, a missing secret), located
// in the descriptor, and strips user info and query strings from every URL
// in the message: buildkitd's own messages keep a signed URL's query.
func explainSolve(err error, def *bkllb.Definition, desc *descriptor.Descriptor, planned []descriptor.PlannedAllotment) error {
	msg := descriptor.RedactText(err.Error())
	var ve *solvererrdefs.VertexError
	if !errors.As(err, &ve) || def == nil {
		return errors.New(msg)
	}
	md, ok := def.Metadata[digest.Digest(ve.Digest)]
	if !ok {
		return errors.New(msg)
	}
	name := md.Description["llb.customname"]
	rest, ok := strings.CutPrefix(name, "[2dfs ")
	if !ok {
		return errors.New(msg)
	}
	var cell field.Cell
	if _, err := fmt.Sscanf(rest, "%d,%d]", &cell.Row, &cell.Col); err != nil {
		return errors.New(msg)
	}
	for _, pa := range planned {
		if pa.Cell != cell {
			continue
		}
		e := &descriptor.Error{File: desc.Filename, Allotment: pa.Index, Cell: &pa.Cell, Msg: msg}
		var a *descriptor.Allotment
		for i := range desc.Allotments {
			if desc.Allotments[i].Index == pa.Index {
				a = &desc.Allotments[i]
			}
		}
		if a != nil {
			e.Pos = a.Pos
		}
		// A fetch vertex is one URL: name it, and locate its src.
		if _, fetched, ok := strings.Cut(rest, "] fetch "); ok {
			for j, c := range pa.Copies {
				if c.URL != "" && c.Src == fetched {
					e.Key = fmt.Sprintf("src[%d] %q", j, c.Src)
					if a != nil && j < len(a.SrcPos) {
						e.Pos = a.SrcPos[j]
					}
					break
				}
			}
		} else if pa.From != "" {
			e.Key = fmt.Sprintf("from %q", pa.From)
		}
		return e
	}
	return errors.New(msg)
}

// fetchProblems finds, after a failed build, every URL source that cannot
// be fetched, and says what came back, located in the descriptor. It solves
// each fetch on its own, so it runs on the failure path only: a build that
// succeeds never pays for it, and a cached allotment never downloads.
//
// BuildKit's HTTP source checks the status code only when no checksum pins
// the URL; a pinned fetch hashes whatever body came back, so a 404 shows as
// a digest mismatch. A mismatch is therefore fetched once more unpinned, to
// tell a wrong checksum from an error page.
func fetchProblems(ctx context.Context, c client.Client, desc *descriptor.Descriptor, planned []descriptor.PlannedAllotment) []*descriptor.Error {
	type job struct {
		a   descriptor.PlannedAllotment
		j   int
		msg string
	}
	var jobs []*job
	for _, a := range planned {
		for j, cp := range a.Copies {
			if cp.URL != "" {
				jobs = append(jobs, &job{a: a, j: j})
			}
		}
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(4)
	for _, jb := range jobs {
		eg.Go(func() error {
			jb.msg = fetchProblem(ctx, c, jb.a, jb.a.Copies[jb.j])
			return nil
		})
	}
	_ = eg.Wait()
	var out []*descriptor.Error
	for _, jb := range jobs {
		if jb.msg == "" {
			continue
		}
		a := jb.a
		e := &descriptor.Error{File: desc.Filename, Allotment: a.Index, Cell: &a.Cell, Key: fmt.Sprintf("src[%d] %q", jb.j, a.Copies[jb.j].Src), Msg: jb.msg}
		for _, da := range desc.Allotments {
			if da.Index == a.Index && jb.j < len(da.SrcPos) {
				e.Pos = da.SrcPos[jb.j]
			}
		}
		out = append(out, e)
	}
	return out
}

var (
	statusRE   = regexp.MustCompile(`invalid response status (\d+)`)
	mismatchRE = regexp.MustCompile(`digest mismatch (?:for \S+: )?(sha256:[0-9a-f]{64})`)
)

// fetchProblem fetches one URL and returns what is wrong with it, or "".
func fetchProblem(ctx context.Context, c client.Client, a descriptor.PlannedAllotment, cp descriptor.Copy) string {
	err := solveEval(ctx, c, llb.FetchState(a, cp))
	if err == nil {
		return ""
	}
	msg := err.Error()
	if m := mismatchRE.FindStringSubmatch(msg); m != nil && cp.Checksum != "" {
		unpinned := cp
		unpinned.Checksum = ""
		uerr := solveEval(ctx, c, llb.FetchState(a, unpinned))
		if uerr == nil {
			return fmt.Sprintf("the server sent a file with digest %s, but the checksum pins %s (the file changed, or the checksum is wrong)", m[1], cp.Checksum)
		}
		msg = uerr.Error()
	}
	if m := statusRE.FindStringSubmatch(msg); m != nil {
		code, _ := strconv.Atoi(m[1])
		hint := ""
		switch code {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = "; check the credentials in the secret named by authSecret (the whole Authorization header value, e.g. \"Basic …\" or \"Bearer …\")"
		}
		return fmt.Sprintf("the server answered %d %s%s", code, http.StatusText(code), hint)
	}
	if strings.Contains(msg, "failed to retrieve HTTP auth secret") {
		return fmt.Sprintf("the secret %q named by authSecret was not given to the build; pass it with --secret id=%s,src=FILE (a file holding the whole Authorization header value)", a.AuthSecret, a.AuthSecret)
	}
	return "cannot fetch it: " + descriptor.RedactText(msg)
}

func solveEval(ctx context.Context, c client.Client, st bkllb.State) error {
	def, err := st.Marshal(ctx)
	if err != nil {
		return err
	}
	_, err = c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), Evaluate: true})
	return err
}

func hasURLs(planned []descriptor.PlannedAllotment) bool {
	for _, a := range planned {
		for _, c := range a.Copies {
			if c.URL != "" {
				return true
			}
		}
	}
	return false
}
