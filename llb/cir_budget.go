package llb

import (
	"fmt"
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
