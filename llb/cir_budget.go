package llb

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	bkllb "github.com/moby/buildkit/client/llb"

	"github.com/tdfs-kit/tdfs/cir"
)

// DebGroupLayer is the layer of a group of packages when the closure is over
// the layer budget (cir.PlanLayers): each .deb fetched pinned by its SHA256,
// all unpacked by deb.sh into one layer, in name order. A group of one is
// DebLayer itself, so a package that keeps its own layer has the cache key
// (and the blob) it has when nothing is grouped. The cache key of a group is
// its packages' digests: the same group is the same layer in every
// application.
func DebGroupLayer(debs []cir.Deb, helper bkllb.State, u DebUnpack, epoch time.Time) bkllb.State {
	if len(debs) == 1 {
		return DebLayer(debs[0], helper, u, epoch)
	}
	var names, files []string
	opts := append(u.env(epoch), bkllb.AddMount("/2dfs", scripts(epoch), bkllb.Readonly))
	for i, d := range debs {
		dir := fmt.Sprintf("/in/%05d", i)
		opts = append(opts, bkllb.AddMount(dir, debSource(d), bkllb.Readonly))
		files = append(files, dir+"/"+d.Filename)
		names = append(names, d.Name)
	}
	// deb.sh unpacks into /out cumulatively: a later package's files go
	// over an earlier one's, as a later layer's would.
	script := `set -e; for f in "$@"; do /bin/sh /2dfs/deb.sh "$f"; done`
	opts = append(opts,
		bkllb.Args(append([]string{"/bin/sh", "-c", script, "deb-group"}, files...)),
		bkllb.WithCustomNamef("[2dfs cir] debs %s (one layer)", strings.Join(names, " ")))
	return helper.Run(opts...).AddMount("/out", bkllb.Scratch())
}

// WheelGroupLayer is the layer of a group of wheels when the closure is over
// the layer budget (cir.PlanClosure): each wheel fetched pinned by its
// sha256 (with the Authorization header of auth(w) when it is not ""), all
// installed by wheel.py into one layer, in name order, as their own layers
// would be merged. A group of one is WheelLayer itself, so a wheel that
// keeps its own layer has the cache key (and the blob) it has when nothing
// is grouped. The cache key of a group is its wheels' digests: the same
// group is the same layer in every application.
func WheelGroupLayer(wheels []cir.Wheel, helper bkllb.State, interp cir.Interpreter, auth func(cir.Wheel) string, epoch time.Time) bkllb.State {
	if len(wheels) == 1 {
		return WheelLayer(wheels[0], helper, interp, auth(wheels[0]), epoch)
	}
	var names, files []string
	opts := []bkllb.RunOption{bkllb.AddMount("/2dfs", scripts(epoch), bkllb.Readonly)}
	for i, w := range wheels {
		dir := fmt.Sprintf("/in/%05d", i)
		opts = append(opts, bkllb.AddMount(dir, wheelSource(w, auth(w)), bkllb.Readonly))
		files = append(files, dir+"/"+w.Filename)
		names = append(names, w.Name+" "+w.Version)
	}
	// wheel.py installs into /out cumulatively: a later wheel's files go
	// over an earlier one's, as a later layer's would; each run sets every
	// time and folder mode in /out again, to the same values.
	script := `set -e; site=$1; bin=$2; epoch=$3; shift 3; for f in "$@"; do python3 /2dfs/wheel.py "$f" "$site" "$bin" "$epoch"; done`
	args := append([]string{"/bin/sh", "-c", script, "wheel-group", interp.SitePackages(), "/usr/local/bin", strconv.FormatInt(epoch.Unix(), 10)}, files...)
	opts = append(opts,
		bkllb.Args(args),
		bkllb.WithCustomNamef("[2dfs cir] wheels %s (one layer)", strings.Join(names, ", ")))
	return helper.Run(opts...).AddMount("/out", bkllb.Scratch())
}
