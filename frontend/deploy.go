package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/platforms"
	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	commonexptypes "github.com/moby/buildkit/exporter/exptypes"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// DeployRequest is what the lazy-builder assembles: a CIR, read by the
// caller from its registry, and a target platform.
type DeployRequest struct {
	// CIR is the CIR by digest, CIRPlatform the platform its config declares
	// (the platform its application layers are pulled as).
	CIR         string
	CIRPlatform ocispec.Platform
	Record      *cir.Record
	// AppRecord is the CIR's field record: its application allotments.
	AppRecord *field.Record
	Target    ocispec.Platform
	// Helper is the image resolving and unpacking run in, of the build
	// host's platform with python3 and pip; "" takes the CIR's base for the
	// build host's platform.
	Helper string
	Epoch  time.Time
	// Lock pins the closure or records it (deploy_lock.go); nil resolves.
	Lock *DeployLock
	// MaxLayers is the layer budget (deploy_budget.go): 0 takes
	// cir.DefaultMaxLayers, a negative one is no budget.
	MaxLayers int
}

// Deploy is the lazy-builder: a client.BuildFunc that assembles the CIR for
// the target platform. Resolving and unpacking run in the helper, of the
// build host's architecture: nothing of the target runs, so no emulation.
func Deploy(req DeployRequest) client.BuildFunc {
	return func(ctx context.Context, c client.Client) (*client.Result, error) {
		target := platforms.Normalize(req.Target)
		tp := platforms.Format(target)
		rec := req.Record
		pinned, ok := rec.Platform(tp)
		if !ok {
			return nil, fmt.Errorf("the CIR's base %s was pinned for %s at pre-build, not for %s; pre-build the CIR with --platform %s (the base must offer it)",
				rec.Base.Ref, strings.Join(rec.PlatformNames(), ", "), tp, tp)
		}

		baseImg, err := imageConfig(ctx, c, rec.Base.Ref, target, "base")
		if err != nil {
			return nil, err
		}
		if got := digest.FromBytes(baseImg.raw); got.String() != pinned.Config {
			return nil, fmt.Errorf("the CIR's base %s for %s has config %s, but the CIR pinned %s; the base changed under its digest", rec.Base.Ref, tp, got, pinned.Config)
		}
		base := bkllb.Image(rec.Base.Ref, bkllb.Platform(target), bkllb.WithCustomName("[2dfs cir] base for "+tp))
		baseRef, err := solveFor(ctx, c, base, target)
		if err != nil {
			return nil, rpcError("the CIR's base %s for %s: %v", rec.Base.Ref, tp, err)
		}
		var interp cir.Interpreter
		if len(rec.Dependencies.Pip) > 0 {
			if interp, err = readInterpreter(ctx, baseRef); err != nil {
				return nil, fmt.Errorf("the CIR's base %s for %s: %w", rec.Base.Ref, tp, err)
			}
		}

		dpkg, err := readDpkgFilters(ctx, baseRef, rec)
		if err != nil {
			return nil, err
		}

		host := buildHost(c)
		helperRef := req.Helper
		if helperRef == "" {
			if _, ok := rec.Platform(platforms.Format(host)); !ok {
				return nil, fmt.Errorf("resolving runs in a helper of the build host's platform %s, which the CIR's base was not pinned for; name a helper image with python3 and pip (--helper)", platforms.Format(host))
			}
			helperRef = rec.Base.Ref
		}
		helper := bkllb.Image(helperRef, bkllb.Platform(host), bkllb.WithCustomName("[2dfs cir] helper for "+platforms.Format(host)))

		resolved := &cir.Resolved{Version: cir.ResolvedVersion, CIR: req.CIR, Platform: tp, Python: interp.Version}
		var debs []cir.Deb
		var mergedUsr bool
		var altLayer *bkllb.State
		var altLinks []string
		if len(rec.Dependencies.Apt) > 0 {
			arch, err := cir.DebianArch(target)
			if err != nil {
				return nil, err
			}
			if mergedUsr, err = isMergedUsr(ctx, baseRef); err != nil {
				return nil, err
			}
			if pinned, ok := req.Lock.pinnedDebs(); ok {
				debs = pinned
			} else if debs, err = resolveApt(ctx, c, llb.AptResolve(helper, base, rec.Dependencies.Apt, arch, tp, req.Epoch), host, tp); err != nil {
				return nil, err
			}
			for _, d := range debs {
				resolved.Debs = append(resolved.Debs, cir.ResolvedDeb{Name: d.Name, Version: d.Version, Arch: d.Arch, Digest: d.Digest.String()})
			}
			if altLayer, altLinks, err = alternatives(ctx, c, debs, helper, host, mergedUsr, req.Epoch); err != nil {
				return nil, fetchError(err, nil, debs)
			}
		}
		var wheels []cir.Wheel
		if len(rec.Dependencies.Pip) > 0 {
			tags, err := interp.PlatformTags(target.Architecture)
			if err != nil {
				return nil, err
			}
			pinned, ok, err := req.Lock.pinnedWheels(interp)
			if err != nil {
				return nil, err
			}
			if ok {
				wheels = pinned
			} else {
				machine, err := cir.Machine(target.Architecture)
				if err != nil {
					return nil, err
				}
				if wheels, err = resolvePip(ctx, c, llb.ResolveOptions{
					Helper: helper, Base: base, Requirements: rec.Dependencies.Pip, Index: rec.Resolver.PipIndex,
					AuthSecret: rec.Resolver.PipAuthSecret, Machine: machine,
					Interpreter: interp, Tags: tags, Platform: tp, Epoch: req.Epoch,
				}, host); err != nil {
					return nil, err
				}
			}
		}
		req.Lock.record(tp, interp, debs, wheels)
		debLayers, debGroups, warnings, err := budgetLayers(req, len(baseImg.img.RootFS.DiffIDs), debs, len(wheels), altLayer != nil, helper, llb.DebUnpack{MergedUsr: mergedUsr, DpkgFilters: dpkg}, resolved)
		if err != nil {
			return nil, err
		}
		layers := make([]bkllb.State, len(wheels))
		for i, w := range wheels {
			layers[i] = llb.WheelLayer(w, helper, interp, wheelAuth(rec.Resolver, w), req.Epoch)
			resolved.Wheels = append(resolved.Wheels, cir.ResolvedWheel{Name: w.Name, Version: w.Version, Filename: w.Filename, Digest: w.Digest.String()})
		}
		app := bkllb.Image(req.CIR, bkllb.Platform(req.CIRPlatform), bkllb.WithCustomName("[2dfs cir] application"))
		res, err := llb.Assemble(llb.AssembleOptions{
			Base: base, BaseImage: baseImg.img, App: app, AppRecord: req.AppRecord,
			Debs: debs, DebLayers: debLayers, DebGroups: debGroups, AltLayer: altLayer, AltLinks: altLinks,
			Wheels: wheels, WheelLayers: layers, SitePackage: interp.SitePackages(),
			Config: rec.Config, Resolved: resolved, Platform: target, Epoch: req.Epoch,
		})
		if err != nil {
			return nil, err
		}
		def, err := res.State.Marshal(ctx, bkllb.Platform(target), bkllb.WithCaps(c.BuildOpts().LLBCaps))
		if err != nil {
			return nil, fmt.Errorf("marshal LLB: %w", err)
		}
		warnDeploy(ctx, c, def, warnings, res.Record)
		// Evaluated here, so a failed fetch is reported with its wheel
		// instead of surfacing bare from the export.
		r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), Evaluate: true, CacheImports: cacheImports(c)})
		if err != nil {
			return nil, fetchError(err, wheels, debs)
		}
		ref, err := r.SingleRef()
		if err != nil {
			return nil, err
		}
		config, err := json.Marshal(res.Image)
		if err != nil {
			return nil, err
		}
		if config, err = res.Record.Embed(config); err != nil {
			return nil, err
		}
		if config, err = resolved.Embed(config); err != nil {
			return nil, err
		}
		out := client.NewResult()
		out.SetRef(ref)
		out.AddMeta(exptypes.ExporterImageConfigKey, config)
		out.AddMeta(commonexptypes.ExporterEpochKey, []byte(strconv.FormatInt(req.Epoch.Unix(), 10)))
		plats, err := json.Marshal(exptypes.Platforms{Platforms: []exptypes.Platform{{ID: tp, Platform: target}}})
		if err != nil {
			return nil, err
		}
		out.AddMeta(exptypes.ExporterPlatformsKey, plats)
		return out, nil
	}
}

// cacheImports are the deploy's --cache-from entries, which BuildKit hands
// a build function as an option: each solve must pass them, or a registry
// cache of dependency layers never hits.
func cacheImports(c client.Client) []client.CacheOptionsEntry {
	bc, err := dockerui.NewClient(c)
	if err != nil {
		return nil
	}
	return bc.CacheImports
}

type resolvedConfig struct {
	img *dockerspec.DockerOCIImage
	raw []byte
}

func imageConfig(ctx context.Context, c client.Client, ref string, p ocispec.Platform, what string) (resolvedConfig, error) {
	_, _, dt, err := c.ResolveImageConfig(ctx, ref, sourceresolver.Opt{
		LogName:  fmt.Sprintf("[2dfs cir] resolve %s %s for %s", what, ref, platforms.Format(p)),
		ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &p},
	})
	if err != nil {
		return resolvedConfig{}, rpcError("%s %s for %s: %v", what, ref, platforms.Format(p), err)
	}
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(dt, &img); err != nil {
		return resolvedConfig{}, fmt.Errorf("%s %s: image config is not valid JSON: %w", what, ref, err)
	}
	return resolvedConfig{img: &img, raw: dt}, nil
}

// readInterpreter reads the base's python3.X and Debian release from its
// files, without running anything of the target.
func readInterpreter(ctx context.Context, ref client.Reference) (cir.Interpreter, error) {
	stats, err := ref.ReadDir(ctx, client.ReadDirRequest{Path: "/usr/bin", IncludePattern: "python3.*"})
	if err != nil {
		return cir.Interpreter{}, rpcError("read /usr/bin: %v", err)
	}
	var names []string
	for _, s := range stats {
		names = append(names, path.Base(s.Path))
	}
	dv, err := ref.ReadFile(ctx, client.ReadRequest{Filename: "/etc/debian_version"})
	if err != nil {
		return cir.Interpreter{}, rpcError("read /etc/debian_version (a CIR base is a Debian image): %v", err)
	}
	return cir.FindInterpreter(names, string(dv))
}

func solveFor(ctx context.Context, c client.Client, st bkllb.State, p ocispec.Platform) (client.Reference, error) {
	def, err := st.Marshal(ctx, bkllb.Platform(p), bkllb.WithCaps(c.BuildOpts().LLBCaps))
	if err != nil {
		return nil, err
	}
	r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), CacheImports: cacheImports(c)})
	if err != nil {
		return nil, err
	}
	return r.SingleRef()
}

// resolvePip runs the resolution and reads its outcome.
func resolvePip(ctx context.Context, c client.Client, o llb.ResolveOptions, host ocispec.Platform) ([]cir.Wheel, error) {
	ref, err := solveFor(ctx, c, llb.PipResolve(o), host)
	if err != nil {
		return nil, rpcError("pip resolve: %v", err)
	}
	read := func(name string) string {
		dt, err := ref.ReadFile(ctx, client.ReadRequest{Filename: name})
		if err != nil {
			return ""
		}
		return string(dt)
	}
	if err := pipFailure(o, read); err != nil {
		return nil, err
	}
	report, err := ref.ReadFile(ctx, client.ReadRequest{Filename: "/report.json"})
	if err != nil {
		return nil, rpcError("pip resolve left no report: %v", err)
	}
	return cir.ParseReport(report)
}

// isMergedUsr says whether the base's /bin is a symlink (into /usr).
func isMergedUsr(ctx context.Context, ref client.Reference) (bool, error) {
	// StatFile follows a symlink in the last component too; a listing of /
	// shows the entry itself.
	entries, err := ref.ReadDir(ctx, client.ReadDirRequest{Path: "/", IncludePattern: "bin"})
	if err != nil {
		return false, rpcError("read the base's /: %v", err)
	}
	for _, e := range entries {
		if path.Base(e.Path) == "bin" {
			return os.FileMode(e.Mode)&os.ModeSymlink != 0, nil
		}
	}
	return false, fmt.Errorf("the base has no /bin")
}

// resolveApt runs the apt resolution and reads its outcome.
func resolveApt(ctx context.Context, c client.Client, st bkllb.State, host ocispec.Platform, platform string) ([]cir.Deb, error) {
	ref, err := solveFor(ctx, c, st, host)
	if err != nil {
		return nil, rpcError("apt resolve: %v", err)
	}
	read := func(name string) string {
		dt, err := ref.ReadFile(ctx, client.ReadRequest{Filename: name})
		if err != nil {
			return ""
		}
		return string(dt)
	}
	if strings.TrimSpace(read("/status")) != "0" {
		return nil, cir.AptError(platform, read("/log"))
	}
	return cir.ParseURIs(read("/uris"))
}

// alternatives runs the alternatives step and returns its layer and links,
// or no layer when the closure registers none (an empty layer would not be
// exported, and the field record would count one too many).
func alternatives(ctx context.Context, c client.Client, debs []cir.Deb, helper bkllb.State, host ocispec.Platform, mergedUsr bool, epoch time.Time) (*bkllb.State, []string, error) {
	// The links are read from the layer itself, not from the report: the
	// layer is part of the image, so a --cache-to of the deploy exports it
	// and a node deploying with --cache-from reads it from the cache; the
	// report is not exported, and reading it ran the step again, fetching
	// every .deb of the closure from the archive.
	layer, _ := llb.Alternatives(debs, helper, mergedUsr, epoch)
	ref, err := solveFor(ctx, c, layer, host)
	if err != nil {
		return nil, nil, err
	}
	links, err := readLinks(ctx, ref, "/")
	if err != nil {
		return nil, nil, rpcError("alternatives: %v", err)
	}
	if len(links) == 0 {
		return nil, nil, nil
	}
	return &layer, links, nil
}

// readLinks lists the symlinks under dir of ref, in path order, as
// "PATH -> TARGET".
func readLinks(ctx context.Context, ref client.Reference, dir string) ([]string, error) {
	entries, err := ref.ReadDir(ctx, client.ReadDirRequest{Path: dir})
	if err != nil {
		return nil, err
	}
	var links []string
	for _, e := range entries {
		p := path.Join(dir, path.Base(e.Path))
		switch mode := os.FileMode(e.Mode); {
		case mode&os.ModeSymlink != 0:
			links = append(links, p+" -> "+e.Linkname)
		case mode.IsDir():
			sub, err := readLinks(ctx, ref, p)
			if err != nil {
				return nil, err
			}
			links = append(links, sub...)
		}
	}
	return links, nil
}

// fetchError names the package whose fetch failed its checksum: BuildKit's
// message names the digests, not the package.
func fetchError(err error, wheels []cir.Wheel, debs []cir.Deb) error {
	msg := err.Error()
	if !strings.Contains(msg, "digest mismatch") && !strings.Contains(msg, "checksum") {
		return err
	}
	for _, d := range debs {
		if strings.Contains(msg, d.Digest.Encoded()) {
			return rpcError("package %s %s from %s: checksum mismatch, the repository listed %s: %v", d.Name, d.Version, d.URL, d.Digest, err)
		}
	}
	for _, w := range wheels {
		if strings.Contains(msg, w.Filename) || strings.Contains(msg, w.Digest.Encoded()) {
			// Flattened (rpcError): BuildKit would send a wrapped status
			// back alone, without the wheel.
			return rpcError("wheel %s %s from %s: checksum mismatch, the index listed %s: %v", w.Name, w.Version, w.URL, w.Digest, err)
		}
	}
	return err
}
