// Package llb turns a planned 2DFS descriptor into LLB and an image config.
// It is the pure core of the frontend, like BuildKit's dockerfile2llb: no
// gateway client, no I/O, so it is unit-tested by marshalling what it builds.
//
// Every allotment becomes its own scratch-based state holding one FileOp of
// copies, so BuildKit builds allotments in parallel, caches each on its own
// and exports each as exactly one layer. The states are merged onto the base
// with MergeOp in row-major order, which keeps the base's layers as they are.
package llb

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	bkllb "github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

// NormalMode is the chmod applied to every copied file and directory:
// directories and executables 0755, other files 0644, no set-id or sticky
// bits ("a=" clears set-id but keeps sticky, hence "a-t"). Builds from
// checkouts with different umasks and modes then give the same layer bytes.
const NormalMode = "a=rX,u+w,a-t"

// DefaultEpoch is the timestamp of every file, history entry and the config
// when the build sets no SOURCE_DATE_EPOCH: fixed, so layers and configs are
// reproducible by default.
var DefaultEpoch = time.Unix(0, 0).UTC()

// defaultPathEnv is what BuildKit's Dockerfile frontend sets for images
// built FROM scratch, so an image with a shell in an allotment can run it.
const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options are the inputs of a conversion besides the allotments.
type Options struct {
	// Context is the build context holding the allotment sources.
	Context bkllb.State
	// Base is the state the field is built on (llb.Scratch() for scratch).
	Base bkllb.State
	// BaseImage is the base's image config; nil for scratch.
	BaseImage *dockerspec.DockerOCIImage
	// Platform is the target platform, used for a scratch base's config.
	Platform ocispec.Platform
	// Epoch is the time of every file and history entry.
	Epoch time.Time
	// Labels are added to the config (BuildKit's label: frontend opts).
	Labels map[string]string
	// NoCache says which allotments must run again instead of coming from
	// the build cache (BuildKit's no-cache opt); nil for none.
	NoCache func(field.Cell) bool
	// Config is the descriptor's config block, applied over the base's
	// (config.go); nil keeps the base's.
	Config *descriptor.Config
	// From holds the images and named contexts allotments read with "from",
	// by name, loaded for the target platform.
	From map[string]bkllb.State
}

// Result is what a conversion produces.
type Result struct {
	State  bkllb.State
	Image  *dockerspec.DockerOCIImage
	Record *field.Record
}

// Convert builds the LLB of a field and the config of its image. allotments
// must be in row-major order, as descriptor.Plan returns them.
func Convert(allotments []descriptor.PlannedAllotment, opt Options) (*Result, error) {
	img := baseConfig(opt)
	inputs := []bkllb.State{opt.Base}
	placed := make([]field.RecordedAllotment, 0, len(allotments))
	for i, a := range allotments {
		if i > 0 && allotments[i-1].Cell.Compare(a.Cell) >= 0 {
			return nil, fmt.Errorf("allotments are not in row-major order at %s", a.Cell)
		}
		if len(a.Copies) == 0 {
			return nil, fmt.Errorf("allotment %s has nothing to copy", a.Cell)
		}
		var extra []bkllb.ConstraintsOpt
		if opt.NoCache != nil && opt.NoCache(a.Cell) {
			extra = append(extra, bkllb.IgnoreCache)
		}
		src, err := sourceState(a, opt)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, AllotmentState(a, src, opt.Epoch, extra...))
		placed = append(placed, field.RecordedAllotment{Row: a.Cell.Row, Col: a.Cell.Col, Dst: a.Dsts()})
		created := opt.Epoch
		img.History = append(img.History, ocispec.History{
			Created:   &created,
			CreatedBy: "2dfs " + describeCopies(a),
			Comment:   field.HistoryComment(a.Cell),
		})
	}
	record := field.NewRecord(len(img.RootFS.DiffIDs), placed)
	// The typed config carries the header label only: the allotments go to
	// a top-level key that the frontend adds to the marshalled config
	// (Record.Embed), since DockerOCIImage has no place for it.
	header, _, err := record.Encode()
	if err != nil {
		return nil, err
	}
	img.Config.Labels[field.LabelKey] = header

	st := opt.Base
	if len(allotments) > 0 {
		st = bkllb.Merge(inputs, bkllb.WithCustomName(fmt.Sprintf("[2dfs] merge %d allotments onto the base", len(allotments))))
	}
	return &Result{State: st, Image: img, Record: record}, nil
}

// AllotmentState is one allotment: a scratch state with one FileOp that
// copies its sources with fixed times, owner 0:0 and normalized modes. extra
// options go to the FileOp (bkllb.IgnoreCache to re-run it). context is where
// its paths are read: the build context, or the state its "from" names; URL
// sources come from their own HTTP source (remote.go).
func AllotmentState(a descriptor.PlannedAllotment, context bkllb.State, epoch time.Time, extra ...bkllb.ConstraintsOpt) bkllb.State {
	var action *bkllb.FileAction
	owner := bkllb.WithUIDGID(0, 0)
	for _, c := range a.Copies {
		info := &bkllb.CopyInfo{
			CreateDestPath:      true,
			CopyDirContentsOnly: c.Dir,
			FollowSymlinks:      true,
			CreatedTime:         &epoch,
			Mode:                &bkllb.ChmodOpt{ModeStr: NormalMode},
		}
		from, src := copySource(a, c, context)
		if action == nil {
			action = bkllb.Copy(from, src, c.Dst, info, owner)
		} else {
			action = action.Copy(from, src, c.Dst, info, owner)
		}
	}
	// A copy gives the epoch to the folders it creates, but adding an entry
	// to a folder an earlier copy created sets that folder's mtime to the
	// builder's clock. So once every source is in, each folder that two or
	// more destinations share gets the epoch again: copying the contents of
	// an empty folder (scratch) onto an existing one sets only its time.
	for _, dir := range SharedFolders(a.Dsts()) {
		action = action.Copy(bkllb.Scratch(), "/", dir, &bkllb.CopyInfo{
			CopyDirContentsOnly: true,
			CreatedTime:         &epoch,
		}, owner)
	}
	opts := append([]bkllb.ConstraintsOpt{bkllb.WithCustomName(fmt.Sprintf("[2dfs %s] %s", a.Cell, describeCopies(a)))}, extra...)
	return bkllb.Scratch().File(action, opts...)
}

// SharedFolders lists, sorted, the folders other than "/" that hold two or
// more of the destinations dsts (clean absolute paths, none inside another).
// Those are the folders that more than one copy writes into.
func SharedFolders(dsts []string) []string {
	count := map[string]int{}
	for _, d := range dsts {
		for dir := path.Dir(d); dir != "/" && dir != "."; dir = path.Dir(dir) {
			count[dir]++
		}
	}
	var shared []string
	for dir, n := range count {
		if n > 1 {
			shared = append(shared, dir)
		}
	}
	slices.Sort(shared)
	return shared
}

func describeCopies(a descriptor.PlannedAllotment) string {
	parts := make([]string, len(a.Copies))
	for i, c := range a.Copies {
		parts[i] = c.Src + " -> " + c.Dst
	}
	if a.From != "" {
		return "--from=" + a.From + " " + strings.Join(parts, ", ")
	}
	return strings.Join(parts, ", ")
}

// baseConfig copies the base image's config, or makes the config of an
// empty image for the platform, ready to receive allotments.
func baseConfig(opt Options) *dockerspec.DockerOCIImage {
	var img dockerspec.DockerOCIImage
	if opt.BaseImage != nil {
		img = *opt.BaseImage
		img.History = append([]ocispec.History(nil), opt.BaseImage.History...)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs[:0:0], opt.BaseImage.RootFS.DiffIDs...)
		img.Config.Labels = maps.Clone(opt.BaseImage.Config.Labels)
	} else {
		img.Platform = opt.Platform
		img.RootFS.Type = "layers"
		img.Config.Env = []string{defaultPathEnv}
	}
	if img.OS == "" {
		img.OS = opt.Platform.OS
		img.Architecture = opt.Platform.Architecture
		img.Variant = opt.Platform.Variant
	}
	created := opt.Epoch
	img.Created = &created
	if img.Config.Labels == nil {
		img.Config.Labels = map[string]string{}
	}
	maps.Copy(img.Config.Labels, opt.Labels)
	ApplyConfig(&img, opt.Config)
	return &img
}
