package llb

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	bkllb "github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
)

// The cell layout of an assembled CIR (docs/cir.md): row 0 for apt
// packages, row 1 for wheels, the application's rows after them.
const (
	AptRow   = 0
	WheelRow = 1
	AppRow   = 2
)

// scripts is a scratch state holding the lazy-builder's scripts, mounted
// read-only into helper containers.
func scripts(epoch time.Time) bkllb.State {
	return bkllb.Scratch().File(
		bkllb.Mkfile("/wheel.py", 0o644, []byte(cir.WheelScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/resolve.sh", 0o644, []byte(cir.ResolveScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/resolve-apt.sh", 0o644, []byte(cir.AptResolveScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/deb.sh", 0o644, []byte(cir.DebScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/dpkgfilter.py", 0o644, []byte(cir.DpkgFilterScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/alternatives.py", 0o644, []byte(cir.AlternativesScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/pipdrv.py", 0o644, []byte(cir.PipDriverScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/missing.py", 0o644, []byte(cir.MissingScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/authproxy.py", 0o644, []byte(cir.AuthProxyScript), bkllb.WithCreatedTime(epoch)).
			Mkfile("/sizes.py", 0o644, []byte(cir.SizesScript), bkllb.WithCreatedTime(epoch)),
		bkllb.WithCustomName("[2dfs cir] scripts"))
}

// ResolveOptions are the inputs of a pip resolution.
type ResolveOptions struct {
	// Helper is an image of the build host's platform with python3 and pip.
	Helper bkllb.State
	// Base is the base for the target, mounted at /base: its installed
	// distributions are not added again.
	Base         bkllb.State
	Requirements []string
	Index        string
	// AuthSecret is the id of the BuildKit secret holding the index's
	// Authorization header value, or "".
	AuthSecret string
	// Machine is the target's platform_machine (x86_64, aarch64).
	Machine     string
	Interpreter cir.Interpreter
	Tags        []string
	Platform    string
	Epoch       time.Time
}

// PipResolve runs pip in the helper to resolve requirements for the target
// platform's tags, against what the base has installed. Its result (the
// /out mount) holds resolve.sh's files. It never comes from the cache:
// without a lock, each deploy resolves fresh. The index's secret, if any, is
// mounted (optional, so resolve.sh can say it is missing) on a tmpfs of
// BuildKit's: it is in no layer and no cache key.
func PipResolve(o ResolveOptions) bkllb.State {
	args := append([]string{"/bin/sh", "/2dfs/resolve.sh"}, o.Requirements...)
	runOpts := []bkllb.RunOption{
		bkllb.Args(args),
		bkllb.AddEnv("PYVER", o.Interpreter.Version),
		bkllb.AddEnv("ABI", o.Interpreter.ABI()),
		bkllb.AddEnv("TAGS", strings.Join(o.Tags, " ")),
		bkllb.AddEnv("INDEX", o.Index),
		bkllb.AddEnv("ORIGIN", cir.Origin(o.Index)),
		bkllb.AddEnv("MACHINE", o.Machine),
		bkllb.AddEnv("AUTH_ID", o.AuthSecret),
		bkllb.AddEnv("PIP_ROOT_USER_ACTION", "ignore"),
		bkllb.AddMount("/2dfs", scripts(o.Epoch), bkllb.Readonly),
		bkllb.AddMount("/base", o.Base, bkllb.Readonly),
		bkllb.IgnoreCache,
		bkllb.WithCustomNamef("[2dfs cir] pip resolve %d requirements for %s (Python %s)", len(o.Requirements), o.Platform, o.Interpreter.Version),
	}
	if o.AuthSecret != "" {
		runOpts = append(runOpts, bkllb.AddSecret("/run/2dfs/pipauth", bkllb.SecretID(o.AuthSecret), bkllb.SecretOptional))
	}
	return o.Helper.Run(runOpts...).AddMount("/out", bkllb.Scratch())
}

// WheelLayer is one wheel: fetched by buildkitd pinned by its sha256 (a
// different content fails the fetch), with the Authorization header of
// authSecret when it is not "" (the caller passes it for the index's own
// origin only), unpacked by the helper into a layer of its own. Its cache key is the helper, the script, the wheel's digest and
// the site folder, so the same wheel gives the same layer in every
// application.
func WheelLayer(w cir.Wheel, helper bkllb.State, interp cir.Interpreter, authSecret string, epoch time.Time) bkllb.State {
	whl := wheelSource(w, authSecret)
	run := helper.Run(
		bkllb.Args([]string{"python3", "/2dfs/wheel.py", "/in/" + w.Filename, interp.SitePackages(), "/usr/local/bin", strconv.FormatInt(epoch.Unix(), 10)}),
		bkllb.AddMount("/2dfs", scripts(epoch), bkllb.Readonly),
		bkllb.AddMount("/in", whl, bkllb.Readonly),
		bkllb.WithCustomNamef("[2dfs cir] wheel %s %s", w.Name, w.Version),
	)
	return run.AddMount("/out", bkllb.Scratch())
}

// wheelSource is a wheel fetched by buildkitd, pinned by its sha256, with
// the Authorization header of authSecret when it is not "".
func wheelSource(w cir.Wheel, authSecret string) bkllb.State {
	httpOpts := []bkllb.HTTPOption{
		bkllb.Checksum(w.Digest),
		bkllb.Filename(w.Filename),
		bkllb.WithCustomNamef("[2dfs cir] fetch %s", w.Filename),
	}
	if authSecret != "" {
		httpOpts = append(httpOpts, bkllb.AuthHeaderSecret(authSecret))
	}
	return bkllb.HTTP(w.URL, httpOpts...)
}

// AptStateCache is the id prefix of the cache mount holding apt's lists
// between resolutions; the target architecture completes it.
const AptStateCache = "2dfs-cir-apt-lists-"

// AptResolve runs apt in the helper to resolve packages for the target
// architecture against the base (mounted at /base): its sources and its
// dpkg status. Never cached, like PipResolve, but by a nonce (a value new
// in each deploy, in the step's environment) rather than IgnoreCache:
// BuildKit empties the cache mounts of an IgnoreCache step, and apt's lists
// are kept between deploys in a cache mount of the build host (one per
// target architecture, locked while apt runs). apt-get update revalidates
// them against the archive every time, so a resolution stays fresh.
func AptResolve(helper, base bkllb.State, packages []string, arch, platform, nonce string, epoch time.Time) bkllb.State {
	run := helper.Run(
		bkllb.Args(append([]string{"/bin/sh", "/2dfs/resolve-apt.sh"}, packages...)),
		bkllb.AddEnv("ARCH", arch),
		bkllb.AddEnv("TDFS_RESOLUTION", nonce),
		bkllb.AddEnv("APT_STATE", "/var/cache/2dfs-apt"),
		bkllb.AddMount("/var/cache/2dfs-apt", bkllb.Scratch(), bkllb.AsPersistentCacheDir(AptStateCache+arch, bkllb.CacheMountLocked)),
		bkllb.AddMount("/2dfs", scripts(epoch), bkllb.Readonly),
		bkllb.AddMount("/base", base, bkllb.Readonly),
		bkllb.WithCustomNamef("[2dfs cir] apt resolve %d packages for %s", len(packages), platform),
	)
	return run.AddMount("/out", bkllb.Scratch())
}

// DebUnpack is what of the base deb.sh unpacks a package for.
type DebUnpack struct {
	// MergedUsr: the base's /bin, /sbin and /lib* are symlinks into /usr.
	MergedUsr bool
	// DpkgFilters are the base's dpkg path-exclude and path-include.
	DpkgFilters cir.DpkgFilters
}

// env is deb.sh's environment: in the cache key of each package layer, so
// the same package is the same layer for every base alike in these, and
// another layer for a base with other filters. No DPKG_FILTERS without
// filters.
func (u DebUnpack) env(epoch time.Time) []bkllb.RunOption {
	merged := "0"
	if u.MergedUsr {
		merged = "1"
	}
	opts := []bkllb.RunOption{
		bkllb.AddEnv("MERGED_USR", merged),
		bkllb.AddEnv("EPOCH", strconv.FormatInt(epoch.Unix(), 10)),
	}
	if len(u.DpkgFilters) > 0 {
		opts = append(opts, bkllb.AddEnv("DPKG_FILTERS", u.DpkgFilters.Env()))
	}
	return opts
}

// DebLayer is one .deb: fetched by buildkitd pinned by its SHA256 and
// unpacked with dpkg-deb -x by the helper into a layer of its own, less
// what the base's dpkg filters leave out.
func DebLayer(d cir.Deb, helper bkllb.State, u DebUnpack, epoch time.Time) bkllb.State {
	deb := debSource(d)
	run := helper.Run(append(u.env(epoch),
		bkllb.Args([]string{"/bin/sh", "/2dfs/deb.sh", "/in/" + d.Filename}),
		bkllb.AddMount("/2dfs", scripts(epoch), bkllb.Readonly),
		bkllb.AddMount("/in", deb, bkllb.Readonly),
		bkllb.WithCustomNamef("[2dfs cir] deb %s %s", d.Name, d.Version),
	)...)
	return run.AddMount("/out", bkllb.Scratch())
}

// debSource is a .deb fetched by buildkitd, pinned by its SHA256; the same
// vertex for the package's layer and the alternatives step.
func debSource(d cir.Deb) bkllb.State {
	return bkllb.HTTP(d.URL, bkllb.Checksum(d.Digest), bkllb.Filename(d.Filename), bkllb.WithCustomNamef("[2dfs cir] fetch %s", d.Filename))
}

// Alternatives reads the update-alternatives and ucf calls of the
// closure's postinst scripts in the helper and makes their links and
// files: layer is the one layer of them, report holds "made" and "skipped"
// (alternatives.py). On a merged-/usr base, paths under /bin, /sbin and
// /lib* go under /usr. A link whose file the base's dpkg filters leave out
// of its package's layer is not made, as update-alternatives skips a link
// to a file that does not exist.
func Alternatives(debs []cir.Deb, helper bkllb.State, u DebUnpack, epoch time.Time) (layer, report bkllb.State) {
	args := []string{"python3", "/2dfs/alternatives.py", strconv.FormatInt(epoch.Unix(), 10)}
	if u.MergedUsr {
		args = append(args, "merged-usr")
	}
	opts := []bkllb.RunOption{
		bkllb.Args(args),
		bkllb.AddMount("/2dfs", scripts(epoch), bkllb.Readonly),
		bkllb.WithCustomNamef("[2dfs cir] alternatives of %d packages", len(debs)),
	}
	if len(u.DpkgFilters) > 0 {
		opts = append(opts, bkllb.AddEnv("DPKG_FILTERS", u.DpkgFilters.Env()))
	}
	for i, d := range debs {
		opts = append(opts, bkllb.AddMount(fmt.Sprintf("/in/%05d", i), debSource(d), bkllb.Readonly))
	}
	run := helper.Run(opts...)
	return run.AddMount("/out", bkllb.Scratch()), run.AddMount("/out-report", bkllb.Scratch())
}

// AssembleOptions are the inputs of an assembly.
type AssembleOptions struct {
	Base      bkllb.State
	BaseImage *dockerspec.DockerOCIImage
	// App is the CIR image: its layers are the application allotments
	// AppRecord lists.
	App       bkllb.State
	AppRecord *field.Record
	// Debs are the apt closure and DebLayers their layers, in order: one
	// per package, or one per group of DebGroups when that is set (the
	// closure was over the layer budget; DebGroups holds indices into Debs).
	Debs      []cir.Deb
	DebLayers []bkllb.State
	DebGroups [][]int
	// AltLayer, when set, is the layer of alternatives links and ucf
	// files, placed after the packages on their row; AltLinks are the
	// links ("PATH -> TARGET") and files ("PATH") it makes.
	AltLayer *bkllb.State
	AltLinks []string
	Wheels   []cir.Wheel
	// WheelLayers are the layers of Wheels, in the same order: one per
	// wheel, or one per group of WheelGroups when that is set (indices
	// into Wheels, as DebGroups).
	WheelLayers []bkllb.State
	WheelGroups [][]int
	SitePackage string
	Config      cir.Config
	Resolved    *cir.Resolved
	Platform    ocispec.Platform
	Epoch       time.Time
}

// Assemble merges the base, one layer per wheel and the application, in
// that order, and makes the image config: the base's, the CIR's config
// applied over it, the field record of the layout above and the record of
// what was resolved.
func Assemble(o AssembleOptions) (*Result, error) {
	if o.DebGroups == nil {
		for i := range o.Debs {
			o.DebGroups = append(o.DebGroups, []int{i})
		}
	}
	if len(o.DebGroups) != len(o.DebLayers) {
		return nil, fmt.Errorf("assemble: %d package layers for %d layers of packages", len(o.DebLayers), len(o.DebGroups))
	}
	if o.WheelGroups == nil {
		for i := range o.Wheels {
			o.WheelGroups = append(o.WheelGroups, []int{i})
		}
	}
	if len(o.WheelGroups) != len(o.WheelLayers) {
		return nil, fmt.Errorf("assemble: %d wheel layers for %d layers of wheels", len(o.WheelLayers), len(o.WheelGroups))
	}
	if o.AppRecord.BaseLayers != 0 {
		return nil, fmt.Errorf("assemble: the CIR's field record has %d base layers; a CIR holds application allotments only", o.AppRecord.BaseLayers)
	}
	img := baseConfig(Options{BaseImage: o.BaseImage, Platform: o.Platform, Epoch: o.Epoch})
	ApplyConfig(img, o.Config.Descriptor())
	baseLayers := len(img.RootFS.DiffIDs)
	created := o.Epoch
	var placed []field.RecordedAllotment
	inputs := []bkllb.State{o.Base}
	for i, g := range o.DebGroups {
		cell := field.Cell{Row: AptRow, Col: i}
		placed = append(placed, field.RecordedAllotment{Row: cell.Row, Col: cell.Col, Dst: []string{"/"}})
		var what []string
		for _, j := range g {
			d := o.Debs[j]
			what = append(what, fmt.Sprintf("%s %s %s (%s)", d.Name, d.Version, d.Arch, d.Digest))
		}
		img.History = append(img.History, ocispec.History{Created: &created, CreatedBy: "2dfs cir deb " + strings.Join(what, ", "), Comment: field.HistoryComment(cell)})
		inputs = append(inputs, o.DebLayers[i])
	}
	if o.AltLayer != nil {
		cell := field.Cell{Row: AptRow, Col: len(o.DebGroups)}
		var dst []string
		files := 0
		for _, l := range o.AltLinks {
			at, _, link := strings.Cut(l, " -> ")
			dst = append(dst, at)
			if !link {
				files++
			}
		}
		placed = append(placed, field.RecordedAllotment{Row: cell.Row, Col: cell.Col, Dst: dst})
		what := fmt.Sprintf("2dfs cir alternatives: %d links", len(o.AltLinks)-files)
		if files > 0 {
			what += fmt.Sprintf(", %d files from ucf", files)
		}
		img.History = append(img.History, ocispec.History{Created: &created, CreatedBy: what, Comment: field.HistoryComment(cell)})
		inputs = append(inputs, *o.AltLayer)
	}
	for i, g := range o.WheelGroups {
		cell := field.Cell{Row: WheelRow, Col: i}
		placed = append(placed, field.RecordedAllotment{Row: cell.Row, Col: cell.Col, Dst: []string{o.SitePackage}})
		var what []string
		for _, j := range g {
			w := o.Wheels[j]
			what = append(what, fmt.Sprintf("%s %s (%s)", w.Name, w.Version, w.Digest))
		}
		img.History = append(img.History, ocispec.History{Created: &created, CreatedBy: "2dfs cir wheel " + strings.Join(what, ", "), Comment: field.HistoryComment(cell)})
		inputs = append(inputs, o.WheelLayers[i])
	}
	for _, a := range o.AppRecord.Allotments {
		cell := field.Cell{Row: AppRow + a.Row, Col: a.Col}
		if !cell.Valid() {
			return nil, fmt.Errorf("assemble: application allotment %s moves out of the field at %s", a.Cell(), cell)
		}
		placed = append(placed, field.RecordedAllotment{Row: cell.Row, Col: cell.Col, Dst: a.Dst})
		img.History = append(img.History, ocispec.History{Created: &created, CreatedBy: "2dfs cir application " + strings.Join(a.Dst, ", "), Comment: field.HistoryComment(cell)})
	}
	inputs = append(inputs, o.App)
	record := field.NewRecord(baseLayers, placed)
	// The header only; the caller embeds the allotments in the marshalled
	// config (field.Record.Embed), as for any field image.
	header, _, err := record.Encode()
	if err != nil {
		return nil, err
	}
	img.Config.Labels[field.LabelKey] = header
	delete(img.Config.Labels, cir.LabelKey)
	if o.Resolved != nil {
		// The summary: the closure goes under cir.ResolvedConfigKey
		// (the caller embeds it, cir.Resolved.Embed), as the field
		// record's allotments do.
		v, err := o.Resolved.Label()
		if err != nil {
			return nil, err
		}
		img.Config.Labels[cir.ResolvedLabelKey] = v
	}
	st := bkllb.Merge(inputs, bkllb.WithCustomNamef("[2dfs cir] merge base, %d packages, %d wheels and the application", len(o.Debs), len(o.Wheels)))
	return &Result{State: st, Image: img, Record: record}, nil
}
