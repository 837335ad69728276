package frontend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
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
	// (the platform its application layers are pulled as). App, when set,
	// is the CIR's image from another source (cirsource.go) and CIR may be
	// "" (a CIR built in the same bake has no digest yet).
	CIR         string
	CIRPlatform ocispec.Platform
	App         *bkllb.State
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
// Its steps: prepare (the base and the helper), resolve (apt and pip side
// by side, or the lock), layers (the budget, the alternatives step beside
// the package layers) and assemble.
func Deploy(req DeployRequest) client.BuildFunc {
	return func(ctx context.Context, c client.Client) (*client.Result, error) {
		d, err := prepareDeploy(ctx, c, req)
		if err != nil {
			return nil, err
		}
		debs, wheels, err := d.resolve(ctx)
		if err != nil {
			return nil, err
		}
		req.Lock.record(d.tp, d.interp, debs, wheels)
		return d.assemble(ctx, debs, wheels)
	}
}

// deployment is one deploy's state between its steps.
type deployment struct {
	req    DeployRequest
	c      client.Client
	target ocispec.Platform
	tp     string
	host   ocispec.Platform
	// base is the CIR's base for the target, baseImg its config, baseRef
	// its solved filesystem (read for the interpreter and the /usr layout).
	base      bkllb.State
	baseImg   resolvedConfig
	baseRef   client.Reference
	helper    bkllb.State
	interp    cir.Interpreter
	mergedUsr bool
	// dpkg holds the base's dpkg path filters (deploy_dpkg.go).
	dpkg     cir.DpkgFilters
	resolved *cir.Resolved
}

// unpack is what of the base a package is unpacked for: the package layers
// and the alternatives step see the same /usr layout and dpkg filters.
func (d *deployment) unpack() llb.DebUnpack {
	return llb.DebUnpack{MergedUsr: d.mergedUsr, DpkgFilters: d.dpkg}
}

// prepareDeploy checks the target against the CIR's pinned base and reads
// what the resolution needs from the base.
func prepareDeploy(ctx context.Context, c client.Client, req DeployRequest) (*deployment, error) {
	target := platforms.Normalize(req.Target)
	tp := platforms.Format(target)
	rec := req.Record
	pinned, ok := rec.Platform(tp)
	if !ok {
		return nil, fmt.Errorf("the CIR's base %s was pinned for %s at pre-build, not for %s; pre-build the CIR with --platform %s (the base must offer it)",
			rec.Base.Ref, strings.Join(rec.PlatformNames(), ", "), tp, tp)
	}
	d := &deployment{req: req, c: c, target: target, tp: tp, host: buildHost(c)}
	var err error
	if d.baseImg, err = imageConfig(ctx, c, rec.Base.Ref, target, "base"); err != nil {
		return nil, err
	}
	if got := digest.FromBytes(d.baseImg.raw); got.String() != pinned.Config {
		return nil, fmt.Errorf("the CIR's base %s for %s has config %s, but the CIR pinned %s; the base changed under its digest", rec.Base.Ref, tp, got, pinned.Config)
	}
	d.base = bkllb.Image(rec.Base.Ref, bkllb.Platform(target), bkllb.WithCustomName("[2dfs cir] base for "+tp))
	if d.baseRef, err = solveFor(ctx, c, d.base, target); err != nil {
		return nil, rpcError("the CIR's base %s for %s: %v", rec.Base.Ref, tp, err)
	}
	if len(rec.Dependencies.Pip) > 0 {
		if d.interp, err = readInterpreter(ctx, d.baseRef); err != nil {
			return nil, fmt.Errorf("the CIR's base %s for %s: %w", rec.Base.Ref, tp, err)
		}
	}
	if len(rec.Dependencies.Apt) > 0 {
		if d.mergedUsr, err = isMergedUsr(ctx, d.baseRef); err != nil {
			return nil, err
		}
	}
	if d.dpkg, err = readDpkgFilters(ctx, d.baseRef, rec); err != nil {
		return nil, err
	}
	helperRef := req.Helper
	if helperRef == "" {
		if _, ok := rec.Platform(platforms.Format(d.host)); !ok {
			return nil, fmt.Errorf("resolving runs in a helper of the build host's platform %s, which the CIR's base was not pinned for; name a helper image with python3 and pip (--helper)", platforms.Format(d.host))
		}
		helperRef = rec.Base.Ref
	}
	d.helper = bkllb.Image(helperRef, bkllb.Platform(d.host), bkllb.WithCustomName("[2dfs cir] helper for "+platforms.Format(d.host)))
	d.resolved = &cir.Resolved{Version: cir.ResolvedVersion, CIR: req.recordedCIR(), Platform: tp, Python: d.interp.Version}
	return d, nil
}

// resolve gives the closure: the lock's, or apt's and pip's, which run at
// the same time (each in its own helper container). When both fail, apt's
// error is the one returned, as when they ran one after the other.
func (d *deployment) resolve(ctx context.Context) ([]cir.Deb, []cir.Wheel, error) {
	var (
		debs           []cir.Deb
		wheels         []cir.Wheel
		aptErr, pipErr error
		wg             sync.WaitGroup
	)
	if len(d.req.Record.Dependencies.Apt) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			debs, aptErr = d.resolveApt(ctx)
		}()
	}
	if len(d.req.Record.Dependencies.Pip) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wheels, pipErr = d.resolvePip(ctx)
		}()
	}
	wg.Wait()
	if aptErr != nil {
		return nil, nil, aptErr
	}
	if pipErr != nil {
		return nil, nil, pipErr
	}
	return debs, wheels, nil
}

func (d *deployment) resolveApt(ctx context.Context) ([]cir.Deb, error) {
	if pinned, ok := d.req.Lock.pinnedDebs(); ok {
		return pinned, nil
	}
	arch, err := cir.DebianArch(d.target)
	if err != nil {
		return nil, err
	}
	return resolveApt(ctx, d.c, llb.AptResolve(d.helper, d.base, d.req.Record.Dependencies.Apt, arch, d.tp, nonce(), d.req.Epoch), d.host, d.tp)
}

func (d *deployment) resolvePip(ctx context.Context) ([]cir.Wheel, error) {
	pinned, ok, err := d.req.Lock.pinnedWheels(d.interp)
	if err != nil || ok {
		return pinned, err
	}
	tags, err := d.interp.PlatformTags(d.target.Architecture)
	if err != nil {
		return nil, err
	}
	machine, err := cir.Machine(d.target.Architecture)
	if err != nil {
		return nil, err
	}
	rec := d.req.Record
	return resolvePip(ctx, d.c, llb.ResolveOptions{
		Helper: d.helper, Base: d.base, Requirements: rec.Dependencies.Pip, Index: rec.Resolver.PipIndex,
		AuthSecret: rec.Resolver.PipAuthSecret, Machine: machine,
		Interpreter: d.interp, Tags: tags, Platform: d.tp, Epoch: d.req.Epoch,
	}, d.host)
}

// assemble lays the closure out in layers within the budget, merges them
// onto the base under the application, and makes the result.
func (d *deployment) assemble(ctx context.Context, debs []cir.Deb, wheels []cir.Wheel) (*client.Result, error) {
	req, rec := d.req, d.req.Record
	for _, dd := range debs {
		d.resolved.Debs = append(d.resolved.Debs, cir.ResolvedDeb{Name: dd.Name, Version: dd.Version, Arch: dd.Arch, Digest: dd.Digest.String()})
	}
	for _, w := range wheels {
		d.resolved.Wheels = append(d.resolved.Wheels, cir.ResolvedWheel{Name: w.Name, Version: w.Version, Filename: w.Filename, Digest: w.Digest.String()})
	}
	bp, altLayer, altLinks, err := d.dependencyLayers(ctx, debs, wheels)
	if err != nil {
		return nil, err
	}
	app := req.app()
	res, err := llb.Assemble(llb.AssembleOptions{
		Base: d.base, BaseImage: d.baseImg.img, App: app, AppRecord: req.AppRecord,
		Debs: debs, DebLayers: bp.debLayers, DebGroups: bp.debGroups, AltLayer: altLayer, AltLinks: altLinks,
		Wheels: wheels, WheelLayers: bp.wheelLayers, WheelGroups: bp.wheelGroups, SitePackage: d.interp.SitePackages(),
		Config: rec.Config, Resolved: d.resolved, Platform: d.target, Epoch: req.Epoch,
	})
	if err != nil {
		return nil, err
	}
	def, err := res.State.Marshal(ctx, bkllb.Platform(d.target), bkllb.WithCaps(d.c.BuildOpts().LLBCaps))
	if err != nil {
		return nil, fmt.Errorf("marshal LLB: %w", err)
	}
	warnDeploy(ctx, d.c, def, bp.warnings, res.Record)
	// Evaluated here, so a failed fetch is reported with its wheel
	// instead of surfacing bare from the export.
	r, err := d.c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), Evaluate: true, CacheImports: cacheImports(d.c)})
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
	if config, err = d.resolved.Embed(config); err != nil {
		return nil, err
	}
	out := client.NewResult()
	out.SetRef(ref)
	out.AddMeta(exptypes.ExporterImageConfigKey, config)
	out.AddMeta(commonexptypes.ExporterEpochKey, []byte(strconv.FormatInt(req.Epoch.Unix(), 10)))
	plats, err := json.Marshal(exptypes.Platforms{Platforms: []exptypes.Platform{{ID: d.tp, Platform: d.target}}})
	if err != nil {
		return nil, err
	}
	out.AddMeta(exptypes.ExporterPlatformsKey, plats)
	return out, nil
}

// dependencyLayers gives the package and wheel layers within the budget
// and the alternatives layer. The alternatives step reads every .deb of the
// closure and decides whether there is a layer at all, which the budget
// counts; so as not to wait for it, the layers the budget gives with an
// alternatives layer are made at the same time, and the budget is laid out
// again without one only if the step makes none (at the budget's edge that
// can group differently; the final solve then makes those layers).
func (d *deployment) dependencyLayers(ctx context.Context, debs []cir.Deb, wheels []cir.Wheel) (bp budgetPlan, altLayer *bkllb.State, altLinks []string, err error) {
	baseLayers := len(d.baseImg.img.RootFS.DiffIDs)
	plan := func(alt bool, resolved *cir.Resolved) (budgetPlan, error) {
		return budgetLayers(d.req, baseLayers, debs, wheels, alt, d.helper, d.unpack(), d.interp, resolved)
	}
	if len(debs) == 0 {
		bp, err = plan(false, d.resolved)
		return bp, nil, nil, err
	}
	guess := *d.resolved
	bp, guessErr := plan(true, &guess)
	var (
		wg      sync.WaitGroup
		warmErr error
	)
	// A budget that has no room with an alternatives layer may have room
	// without one: then nothing is made before the step says.
	if guessErr == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			warmErr = d.warm(ctx, append(append([]bkllb.State{}, bp.debLayers...), bp.wheelLayers...))
		}()
	}
	altLayer, altLinks, err = alternatives(ctx, d.c, debs, d.helper, d.host, d.unpack(), d.req.Epoch)
	wg.Wait()
	if err != nil {
		return bp, nil, nil, fetchError(err, nil, debs)
	}
	if warmErr != nil {
		return bp, nil, nil, fetchError(warmErr, wheels, debs)
	}
	if altLayer != nil {
		if guessErr != nil {
			return bp, nil, nil, guessErr
		}
		*d.resolved = guess
		return bp, altLayer, altLinks, nil
	}
	bp, err = plan(false, d.resolved)
	return bp, nil, nil, err
}

// warm makes the given layers, so the final solve finds them done.
func (d *deployment) warm(ctx context.Context, layers []bkllb.State) error {
	if len(layers) == 0 {
		return nil
	}
	st := bkllb.Merge(layers, bkllb.WithCustomNamef("[2dfs cir] %d dependency layers", len(layers)))
	def, err := st.Marshal(ctx, bkllb.Platform(d.host), bkllb.WithCaps(d.c.BuildOpts().LLBCaps))
	if err != nil {
		return err
	}
	_, err = d.c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), Evaluate: true, CacheImports: cacheImports(d.c)})
	return err
}

// nonce is new in every call: it keeps a resolution out of the build cache
// (llb.AptResolve says why not IgnoreCache).
func nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
	// A release name or number: a line, read no further than 4 KiB.
	dv, err := readBounded(ctx, ref, "/etc/debian_version", 4<<10+1)
	if err != nil {
		return cir.Interpreter{}, rpcError("read /etc/debian_version (a CIR base is a Debian image): %v", err)
	}
	if len(dv) > 4<<10 {
		return cir.Interpreter{}, fmt.Errorf("the base's /etc/debian_version is over 4 KiB: not a Debian release")
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
	wheels, err := cir.ParseReport(report)
	if err != nil {
		return nil, err
	}
	return wheels, cir.SetSizes(wheels, read("/sizes"))
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
func alternatives(ctx context.Context, c client.Client, debs []cir.Deb, helper bkllb.State, host ocispec.Platform, unpack llb.DebUnpack, epoch time.Time) (*bkllb.State, []string, error) {
	// The links are read from the layer itself, not from the report: the
	// layer is part of the image, so a --cache-to of the deploy exports it
	// and a node deploying with --cache-from reads it from the cache; the
	// report is not exported, and reading it ran the step again, fetching
	// every .deb of the closure from the archive.
	layer, _ := llb.Alternatives(debs, helper, unpack, epoch)
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
// "PATH -> TARGET", and the files (the ucf copies) as "PATH".
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
		case mode.IsRegular():
			links = append(links, p)
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
