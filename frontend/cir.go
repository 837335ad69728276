package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	commonexptypes "github.com/moby/buildkit/exporter/exptypes"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// buildCIR is the pre-builder: a descriptor with dependencies gives a CIR,
// one platform-independent image of the application allotments alone
// (scratch, no base layers) whose config carries the CIR record. The target
// platforms of the build (--platform) are the platforms the base is pinned
// for: each must exist in the base, or the build fails now instead of at
// deploy. The image declares the build host's platform (docs/cir.md).
func buildCIR(ctx context.Context, c client.Client, bc *dockerui.Client, desc *descriptor.Descriptor, planned []descriptor.PlannedAllotment,
	buildContext bkllb.State, epoch time.Time, noCache func(field.Cell) bool) (*client.Result, error) {
	if nc, err := bc.NamedContext(BaseContextName, dockerui.ContextOpt{}); err != nil {
		return nil, err
	} else if nc != nil {
		return nil, fmt.Errorf("a CIR pins its base by digest from the descriptor's \"base\"; the %q named context is not supported for a descriptor with dependencies", BaseContextName)
	}
	base, err := pinBase(ctx, c, bc, desc)
	if err != nil {
		return nil, err
	}
	host := buildHost(c)
	// Allotments that read "from" an image read it as the CIR's declared
	// platform.
	from, err := loadFrom(ctx, bc, desc, host)
	if err != nil {
		return nil, err
	}
	res, err := llb.Convert(planned, llb.Options{
		From:     from,
		Context:  buildContext,
		Base:     bkllb.Scratch(),
		Platform: host,
		Epoch:    epoch,
		Labels:   bc.Labels,
		NoCache:  noCache,
	})
	if err != nil {
		return nil, err
	}
	record := cir.NewRecord(desc.Dependencies, desc.Config, base)
	value, err := record.Encode()
	if err != nil {
		return nil, err
	}
	img := res.Image
	img.Config.Labels[cir.LabelKey] = value
	img.Config.Entrypoint = []string{cir.NotDeployedEntrypoint}
	img.Config.Cmd = nil

	def, err := res.State.Marshal(ctx, bkllb.Platform(host), bkllb.WithCaps(c.BuildOpts().LLBCaps))
	if err != nil {
		return nil, fmt.Errorf("marshal LLB: %w", err)
	}
	r, err := c.Solve(ctx, client.SolveRequest{Definition: def.ToPB(), CacheImports: bc.CacheImports})
	if err != nil {
		return nil, err
	}
	ref, err := r.SingleRef()
	if err != nil {
		return nil, err
	}
	config, err := json.Marshal(img)
	if err != nil {
		return nil, err
	}
	if config, err = res.Record.Embed(config); err != nil {
		return nil, err
	}
	out := client.NewResult()
	out.SetRef(ref)
	out.AddMeta(exptypes.ExporterImageConfigKey, config)
	out.AddMeta(commonexptypes.ExporterEpochKey, []byte(strconv.FormatInt(epoch.Unix(), 10)))
	plats, err := json.Marshal(exptypes.Platforms{Platforms: []exptypes.Platform{{ID: platforms.Format(host), Platform: host}}})
	if err != nil {
		return nil, err
	}
	out.AddMeta(exptypes.ExporterPlatformsKey, plats)
	return out, nil
}

// pinBase resolves the descriptor's base for every target platform: one
// digest for the tag (an index for a multi-platform base) and the config
// digest of each platform.
func pinBase(ctx context.Context, c client.Client, bc *dockerui.Client, desc *descriptor.Descriptor) (cir.Base, error) {
	where := fmt.Sprintf("%s:%d:%d: base %q", desc.Filename, desc.BasePos.Line, desc.BasePos.Column, desc.Base)
	named, err := reference.ParseNormalizedNamed(desc.Base)
	if err != nil {
		return cir.Base{}, fmt.Errorf("%s: not a valid image reference: %w", where, err)
	}
	named = reference.TagNameOnly(named)
	targets := bc.TargetPlatforms
	if len(targets) == 0 {
		targets = []ocispec.Platform{buildHost(c)}
	}
	var base cir.Base
	ref := named.String()
	for _, p := range targets {
		p = platforms.Normalize(p)
		_, dgst, dt, err := c.ResolveImageConfig(ctx, ref, sourceresolver.Opt{
			LogName:  fmt.Sprintf("[2dfs] pin CIR base %s for %s", reference.FamiliarString(named), platforms.Format(p)),
			ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &p, ResolveMode: bc.ImageResolveMode.String()},
		})
		if err != nil {
			return cir.Base{}, rpcError("%s: no image for %s, a target platform of this CIR: %v", where, platforms.Format(p), err)
		}
		if base.Ref == "" {
			// Later platforms resolve the digest the first one found, so a
			// tag that moves during the build cannot mix two bases.
			pinned, err := reference.WithDigest(reference.TrimNamed(named), dgst)
			if err != nil {
				return cir.Base{}, fmt.Errorf("%s: %w", where, err)
			}
			ref = pinned.String()
			base.Ref = ref
		}
		base.Platforms = append(base.Platforms, cir.BasePlatform{Platform: platforms.Format(p), Config: digest.FromBytes(dt).String()})
	}
	return base, nil
}

// buildHost is the platform of the builder: the worker's first platform.
func buildHost(c client.Client) ocispec.Platform {
	if w := c.BuildOpts().Workers; len(w) > 0 && len(w[0].Platforms) > 0 {
		return platforms.Normalize(w[0].Platforms[0])
	}
	return platforms.DefaultSpec()
}
