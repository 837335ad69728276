package frontend

import (
	"context"
	"fmt"

	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/frontend/subrequests/outline"
	"github.com/moby/buildkit/frontend/subrequests/targets"
	"github.com/moby/buildkit/solver/pb"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// handleSubrequest answers BuildKit subrequests (docker buildx build --call
// outline, --call targets, and the describe request buildx sends first). The
// frontend image advertises the subrequests capability, so BuildKit routes
// them here instead of answering itself. ok is false for a normal build.
func handleSubrequest(ctx context.Context, bc *dockerui.Client, desc *descriptor.Descriptor, data []byte) (*client.Result, bool, error) {
	return bc.HandleSubrequest(ctx, dockerui.RequestHandler{
		Outline: func(context.Context) (*outline.Outline, error) {
			return fieldOutline(desc, data), nil
		},
		ListTargets: func(context.Context) (*targets.List, error) {
			return fieldTargets(desc, data), nil
		},
	})
}

// sourceDateEpochArg is the one build arg the frontend reads.
const sourceDateEpochArg = "SOURCE_DATE_EPOCH"

// fieldOutline lists what a build of desc reads besides the descriptor: the
// build args and, in the description, the "base" named context (an outline
// has no list of named contexts).
func fieldOutline(desc *descriptor.Descriptor, data []byte) *outline.Outline {
	return &outline.Outline{
		Description: summary(desc) + fmt.Sprintf("; --build-context %s=docker-image://REF (or oci-layout://) replaces the base image", BaseContextName),
		Args: []outline.Arg{{
			Name:        sourceDateEpochArg,
			Value:       "0",
			Description: "time of every file and history entry, in seconds since 1970",
		}},
		Sources: [][]byte{data},
	}
}

// fieldTargets lists the one target a descriptor has: the field image. The
// frontend ignores --target.
func fieldTargets(desc *descriptor.Descriptor, data []byte) *targets.List {
	t := targets.Target{Default: true, Description: summary(desc), Base: desc.Base}
	if desc.BasePos.Line > 0 {
		line := int32(desc.BasePos.Line)
		t.Location = &pb.Location{Ranges: []*pb.Range{{Start: &pb.Position{Line: line}, End: &pb.Position{Line: line}}}}
	}
	return &targets.List{Targets: []targets.Target{t}, Sources: [][]byte{data}}
}

func summary(desc *descriptor.Descriptor) string {
	base := desc.Base
	if base == "" {
		base = "scratch"
	}
	n := len(desc.Allotments)
	noun := "allotments"
	if n == 1 {
		noun = "allotment"
	}
	return fmt.Sprintf("2DFS field of %d %s on base %s", n, noun, base)
}
