// Package frontend is the BuildKit gateway frontend for 2DFS descriptors. It
// is the I/O edge around the pure packages: it reads the descriptor from the
// build, checks the sources against the context, resolves the base image for
// each target platform, and solves what package llb builds. The same Build
// runs in the frontend image (cmd/2dfs-frontend) and in-process in the CLI.
package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/solver/pb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// BaseContextName is the named build context that overrides the
// descriptor's "base" (docker buildx build --build-context base=...).
const BaseContextName = "base"

// Build is the frontend's entry point: a client.BuildFunc.
func Build(ctx context.Context, c client.Client) (*client.Result, error) {
	if err := checkCaps(c); err != nil {
		return nil, err
	}
	// The "cir" named context makes this build the lazy-builder (cirdeploy.go).
	if res, ok, err := deployFromContext(ctx, c); ok {
		return res, err
	}
	desc, bc, src, err := readDescriptor(ctx, c)
	if err != nil {
		return nil, err
	}
	if res, ok, err := handleSubrequest(ctx, bc, desc, src.Data); err != nil || ok {
		return res, err
	}
	if len(desc.Allotments) == 0 {
		src.Warn(ctx, "the descriptor has no allotments: the image is the base image alone", client.WarnOpts{})
	}
	// Refuse fields BuildKit cannot export before any work: the allotment
	// count now, the platforms' descriptors once each base is resolved.
	if err := desc.CheckLimits(); err != nil {
		return nil, err
	}
	numPlatforms := max(1, len(bc.TargetPlatforms))
	if err := desc.CheckImageDescriptors(numPlatforms, 0); err != nil {
		return nil, err
	}

	epoch, err := sourceDateEpoch(bc.BuildArgs)
	if err != nil {
		return nil, err
	}

	var opts []bkllb.LocalOption
	if srcs := desc.Sources(); len(srcs) > 0 {
		// Transfer only what the allotments copy, not the whole folder.
		opts = append(opts, bkllb.FollowPaths(srcs))
	}
	buildContext, err := bc.MainContext(ctx, opts...)
	if err != nil {
		return nil, err
	}
	warn := func(msg string) { src.Warn(ctx, msg, client.WarnOpts{}) }
	from, err := loadFrom(ctx, bc, desc, planPlatform(bc))
	if err != nil {
		return nil, err
	}
	planned, err := plan(ctx, c, desc, *buildContext, bc.CacheImports, warn, fromStat(ctx, c, from, bc.CacheImports, warn))
	if err != nil {
		return nil, err
	}
	noCacheCells, err := noCache(c.BuildOpts().Opts, planned)
	if err != nil {
		return nil, err
	}

	if desc.Dependencies != nil {
		return buildCIR(ctx, c, bc, desc, planned, *buildContext, epoch, noCacheCells)
	}

	var mu sync.Mutex
	records := map[string]*field.Record{} // by dockerui's export platform ID
	rb, err := bc.Build(ctx, func(ctx context.Context, platform *ocispec.Platform, _ int) (*dockerui.BuildResult, error) {
		p := targetPlatform(platform)
		base, baseImg, err := resolveBase(ctx, c, bc, desc, p)
		if err != nil {
			return nil, err
		}
		if baseImg != nil {
			if err := desc.CheckImageDescriptors(numPlatforms, len(baseImg.RootFS.DiffIDs)); err != nil {
				return nil, err
			}
		}
		from, err := loadFrom(ctx, bc, desc, p)
		if err != nil {
			return nil, err
		}
		res, err := llb.Convert(planned, llb.Options{
			From:      from,
			Context:   *buildContext,
			Base:      base,
			BaseImage: baseImg,
			Platform:  p,
			Epoch:     epoch,
			Labels:    bc.Labels,
			NoCache:   noCacheCells,
			Config:    desc.Config,
		})
		if err != nil {
			return nil, err
		}
		mu.Lock()
		records[platforms.FormatAll(platforms.Normalize(p))] = res.Record
		mu.Unlock()
		if w := field.RunnableWarning(res.Record.BaseLayers, len(res.Record.Allotments)); w != "" {
			if numPlatforms > 1 {
				w = platformString(p) + ": " + w
			}
			src.Warn(ctx, w, client.WarnOpts{})
		}
		def, err := res.State.Marshal(ctx, bkllb.Platform(p), bkllb.WithCaps(c.BuildOpts().LLBCaps))
		if err != nil {
			return nil, fmt.Errorf("marshal LLB: %w", err)
		}
		if n := definitionSize(def); n > maxDefinitionBytes {
			return nil, fmt.Errorf("%s: the build definition of %d allotments is %d bytes, over BuildKit's %d byte gRPC message limit; split the field",
				desc.Filename, len(planned), n, maxDefinitionBytes)
		}
		r, err := c.Solve(ctx, client.SolveRequest{
			Definition: def.ToPB(),
			// Without the build's cache imports, --cache-from never hits.
			CacheImports: bc.CacheImports,
			// A lazy result would fail at export, after the frontend has
			// returned, with buildkitd's bare message; evaluated here, a
			// failed fetch gets an error naming its allotment and URL.
			Evaluate: hasURLs(planned),
		})
		if err != nil {
			if problems := fetchProblems(ctx, c, desc, planned); len(problems) > 0 {
				return nil, &descriptor.ErrorList{Errors: problems}
			}
			return nil, explainSolve(err, def, desc, planned)
		}
		ref, err := r.SingleRef()
		if err != nil {
			return nil, err
		}
		return &dockerui.BuildResult{Reference: ref, Image: res.Image, BaseImage: baseImg, Epoch: &epoch}, nil
	})
	if err != nil {
		return nil, err
	}
	res, err := rb.Finalize()
	if err != nil {
		return nil, err
	}
	if err := embedRecords(res.Metadata, records); err != nil {
		return nil, err
	}
	return res, nil
}

// embedRecords writes each platform's field record into the image config
// dockerui marshalled for the exporter (the containerimage.config metadata,
// suffixed with the platform ID for a multi-platform build). dockerui
// marshals a typed config, which has no place for the record's top-level
// key; BuildKit's exporter keeps unknown top-level keys of this config.
func embedRecords(meta map[string][]byte, records map[string]*field.Record) error {
	embedded := 0
	for key, config := range meta {
		var rec *field.Record
		switch id, ok := strings.CutPrefix(key, exptypes.ExporterImageConfigKey+"/"); {
		case ok:
			rec = records[id]
		case key == exptypes.ExporterImageConfigKey && len(records) == 1:
			for _, r := range records {
				rec = r
			}
		case key != exptypes.ExporterImageConfigKey:
			continue
		}
		if rec == nil {
			return fmt.Errorf("internal error: no field record for the image config %s", key)
		}
		out, err := rec.Embed(config)
		if err != nil {
			return fmt.Errorf("image config %s: %w", key, err)
		}
		meta[key] = out
		embedded++
	}
	if embedded != len(records) {
		return fmt.Errorf("internal error: %d field records for %d image configs", len(records), embedded)
	}
	return nil
}

// maxDefinitionBytes is BuildKit's gRPC message limit (16 MiB, both ways
// between the frontend and buildkitd), less room for the rest of the solve
// request. Descriptor limits keep definitions far below it (about 450 bytes
// per allotment); this check turns a gRPC "message larger than max" into an
// error that says what is too large.
const maxDefinitionBytes = 16<<20 - 64<<10

func definitionSize(def *bkllb.Definition) int {
	n := 0
	for _, op := range def.Def {
		n += len(op)
	}
	return n
}

// checkCaps fails early, with advice, on a worker that cannot build fields.
// (BuildKit defines no advertised capability for symbolic copy modes, which
// llb.NormalMode uses; workers since v0.14 apply them.)
func checkCaps(c client.Client) error {
	caps := c.BuildOpts().LLBCaps
	if err := caps.Supports(pb.CapMergeOp); err != nil {
		return fmt.Errorf("this BuildKit worker does not support MergeOp, which 2DFS needs to keep every allotment its own layer "+
			"(use BuildKit v0.10 or later with the OCI or containerd worker; Docker Engine needs the containerd image store): %w", err)
	}
	return nil
}

// readDescriptor reads and parses the descriptor named by the "filename"
// opt. With no filename it tries 2dfs.json, then 2dfs.yaml and 2dfs.yml.
func readDescriptor(ctx context.Context, c client.Client) (*descriptor.Descriptor, *dockerui.Client, *dockerui.Source, error) {
	names := descriptor.DefaultFilenames
	if name, ok := c.BuildOpts().Opts["filename"]; ok && name != "" {
		names = []string{name}
	}
	var firstErr error
	for _, name := range names {
		bc, err := dockerui.NewClient(withFilename{Client: c, filename: name})
		if err != nil {
			return nil, nil, nil, err
		}
		src, err := bc.ReadEntrypoint(ctx, "2dfs")
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		desc, err := descriptor.Parse(name, src.Data)
		if err != nil {
			if looksLikeDockerfile(src.Data) {
				return nil, nil, nil, fmt.Errorf("%s looks like a Dockerfile, but this is the 2DFS frontend, which reads a 2dfs.json descriptor; build Dockerfiles without a 2DFS syntax directive", name)
			}
			return nil, nil, nil, err
		}
		return desc, bc, src, nil
	}
	if len(names) > 1 {
		return nil, nil, nil, rpcError("no descriptor found: looked for %s in the build (name another with the filename opt, -f): %v", strings.Join(names, ", "), firstErr)
	}
	return nil, nil, nil, rpcError("read descriptor %s: %v", names[0], firstErr)
}

func looksLikeDockerfile(data []byte) bool {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, _, _ := strings.Cut(line, " ")
		return strings.EqualFold(word, "FROM") || strings.EqualFold(word, "ARG")
	}
	return false
}

// withFilename makes dockerui read our descriptor name instead of its
// default, Dockerfile.
type withFilename struct {
	client.Client
	filename string
}

func (w withFilename) BuildOpts() client.BuildOpts {
	o := w.Client.BuildOpts()
	opts := make(map[string]string, len(o.Opts)+1)
	for k, v := range o.Opts {
		opts[k] = v
	}
	opts["filename"] = w.filename
	o.Opts = opts
	return o
}

// plan checks every source against the build context, solving the context
// once; BuildKit then reuses that transfer for the copies.
func plan(ctx context.Context, c client.Client, desc *descriptor.Descriptor, buildContext bkllb.State, cacheImports []client.CacheOptionsEntry, warn func(string), statFrom descriptor.StatFromFunc) ([]descriptor.PlannedAllotment, error) {
	if len(desc.Allotments) == 0 {
		return nil, nil
	}
	if len(desc.Sources()) == 0 {
		// Every source is a URL or in another image or context: the build
		// context is not transferred at all.
		return desc.PlanSources(nil, statFrom)
	}
	def, err := buildContext.Marshal(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), CacheImports: cacheImports})
	if err != nil {
		return nil, rpcError("load build context: %v", err)
	}
	ref, err := r.SingleRef()
	if err != nil {
		return nil, err
	}
	return desc.PlanSources(newSourceChecker(ctx, ref, maxWalkFolders, warn).stat, statFrom)
}

func targetPlatform(p *ocispec.Platform) ocispec.Platform {
	if p != nil {
		return *p
	}
	// dockerui exports an unset target platform under the default spec, so
	// the config must say the same.
	return platforms.DefaultSpec()
}

// resolveBase returns the base state and config for one platform: the "base"
// named context if the build has one, else the descriptor's base image, else
// scratch.
func resolveBase(ctx context.Context, c client.Client, bc *dockerui.Client, desc *descriptor.Descriptor, p ocispec.Platform) (bkllb.State, *dockerspec.DockerOCIImage, error) {
	nc, err := bc.NamedContext(BaseContextName, dockerui.ContextOpt{Platform: &p, ResolveMode: bc.ImageResolveMode.String()})
	if err != nil {
		return bkllb.State{}, nil, err
	}
	if nc != nil {
		st, img, err := nc.Load(ctx)
		if err != nil {
			return bkllb.State{}, nil, rpcError("build context %q: %v", BaseContextName, err)
		}
		if img == nil {
			return bkllb.State{}, nil, fmt.Errorf("build context %q must be an image (docker-image://... or oci-layout://...), not a directory: the field record counts the base's layers", BaseContextName)
		}
		return *st, img, nil
	}

	if desc.Base == "" || desc.Base == "scratch" {
		return bkllb.Scratch(), nil, nil
	}
	where := fmt.Sprintf("%s:%d:%d: base %q", desc.Filename, desc.BasePos.Line, desc.BasePos.Column, desc.Base)
	named, err := reference.ParseNormalizedNamed(desc.Base)
	if err != nil {
		return bkllb.State{}, nil, fmt.Errorf("%s: not a valid image reference: %w", where, err)
	}
	named = reference.TagNameOnly(named)
	_, dgst, dt, err := c.ResolveImageConfig(ctx, named.String(), sourceresolver.Opt{
		LogName:  fmt.Sprintf("[2dfs] resolve base %s for %s", reference.FamiliarString(named), platformString(p)),
		ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &p, ResolveMode: bc.ImageResolveMode.String()},
	})
	if err != nil {
		return bkllb.State{}, nil, rpcError("%s: %v", where, err)
	}
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(dt, &img); err != nil {
		return bkllb.State{}, nil, fmt.Errorf("%s: image config is not valid JSON: %w", where, err)
	}
	pinned := named.String()
	if dgst != "" {
		if withDigest, err := reference.WithDigest(named, dgst); err == nil {
			pinned = withDigest.String()
		}
	}
	st := bkllb.Image(pinned, bkllb.Platform(p), bkllb.WithCustomName("[2dfs] base "+reference.FamiliarString(named)))
	return st, &img, nil
}

// SourceDateEpoch is the epoch a build with these build args uses: the
// direct engine reads it the way the frontend does.
func SourceDateEpoch(buildArgs map[string]string) (time.Time, error) {
	return sourceDateEpoch(buildArgs)
}

// sourceDateEpoch returns the SOURCE_DATE_EPOCH build arg as a time, or the
// fixed default epoch.
func sourceDateEpoch(args map[string]string) (time.Time, error) {
	v, ok := args[sourceDateEpochArg]
	if !ok || v == "" {
		return llb.DefaultEpoch, nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("build arg SOURCE_DATE_EPOCH=%q: want seconds since 1970 as a non-negative integer", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func platformString(p ocispec.Platform) string { return platforms.Format(p) }

// rpcError wraps an error that came back from BuildKit. It flattens the
// cause into the message on purpose: BuildKit sends a wrapped gRPC status
// back as that status alone, which would drop the context we add here (the
// file, the line, the named context).
func rpcError(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}
