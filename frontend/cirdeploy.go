package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	commonexptypes "github.com/moby/buildkit/exporter/exptypes"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

// CIRContextName is the named build context that makes the frontend the
// lazy-builder: `--build-context cir=docker-image://REF` assembles the CIR
// REF for each target platform (--platform), as `2dfs deploy` does.
const CIRContextName = descriptor.CIRContextName

// CIRHelperContextName names the helper image resolving and unpacking run
// in (2dfs deploy's --helper): `--build-context cir-helper=docker-image://IMAGE`.
const CIRHelperContextName = "cir-helper"

const dockerImageScheme = "docker-image://"

// deployFromContext runs the lazy-builder when the build has the "cir" named
// context; ok says whether it did.
func deployFromContext(ctx context.Context, c client.Client) (res *client.Result, ok bool, err error) {
	opts := c.BuildOpts().Opts
	value, ok := opts["context:"+CIRContextName]
	if !ok {
		for k := range opts {
			if strings.HasPrefix(k, "context:"+CIRContextName+"::") {
				return nil, true, fmt.Errorf("the %q named context is given for one platform (%s); a CIR is platform-independent: give it once, without a platform, and the targets with --platform",
					CIRContextName, strings.TrimPrefix(k, "context:"))
			}
		}
		return nil, false, nil
	}
	res, err = deployCIR(ctx, c, value)
	return res, true, err
}

// deployCIR assembles the CIR named by the "cir" context for every target
// platform: one platform gives an image, several give an index.
func deployCIR(ctx context.Context, c client.Client, value string) (*client.Result, error) {
	bc, err := dockerui.NewClient(c)
	if err != nil {
		return nil, err
	}
	desc, err := checkDeployDescriptor(ctx, c, bc)
	if err != nil {
		return nil, err
	}
	if nc, err := bc.NamedContext(BaseContextName, dockerui.ContextOpt{}); err != nil {
		return nil, err
	} else if nc != nil {
		return nil, fmt.Errorf("a CIR is assembled on the base it pinned at pre-build; the %q named context cannot be combined with %q", BaseContextName, CIRContextName)
	}
	helper := ""
	if v, ok := c.BuildOpts().Opts["context:"+CIRHelperContextName]; ok {
		if helper, err = contextImage(CIRHelperContextName, v); err != nil {
			return nil, err
		}
	}
	epoch, err := sourceDateEpoch(bc.BuildArgs)
	if err != nil {
		return nil, err
	}
	req, hint, err := cirSource(ctx, c, bc, value)
	if err != nil {
		return nil, err
	}
	req.Helper, req.Epoch = helper, epoch

	targets := targetPlatforms(bc.TargetPlatforms, buildHost(c))
	if err := checkPinned(req.Record, targets); err != nil {
		return nil, err
	}
	if host := platforms.Format(buildHost(c)); helper == "" {
		if _, ok := req.Record.Platform(host); !ok {
			return nil, fmt.Errorf("resolving runs in a helper of the build host's platform %s, which the CIR's base was not pinned for; name a helper image with python3 and pip: --build-context %s=docker-image://IMAGE", host, CIRHelperContextName)
		}
	}

	// The lock the descriptor names, read from the build context: each
	// target's closure is pinned by it (deploy_lock.go).
	var locked []*DeployLock
	if desc != nil && desc.Lock != "" {
		if locked, err = contextLock(ctx, c, bc, desc.Lock, req, targets, hint); err != nil {
			return nil, err
		}
	}

	results := make([]*client.Result, len(targets))
	eg, ectx := errgroup.WithContext(ctx)
	for i, p := range targets {
		r := req
		r.Target = p
		if locked != nil {
			r.Lock = locked[i]
		}
		eg.Go(func() error {
			res, err := Deploy(r)(ectx, c)
			results[i] = res
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	if len(results) == 1 {
		// The result 2dfs deploy exports, so both make the same image.
		return results[0], nil
	}
	return mergePlatforms(targets, results)
}

// checkDeployDescriptor reads the descriptor when the build names one (docker
// buildx and bake always do: they need a file to find the frontend) and
// refuses one that holds more than "syntax" and "lock". buildctl may send
// none: the descriptor is then nil.
func checkDeployDescriptor(ctx context.Context, c client.Client, bc *dockerui.Client) (*descriptor.Descriptor, error) {
	filename := c.BuildOpts().Opts["filename"]
	if filename == "" {
		return nil, nil
	}
	src, err := bc.ReadEntrypoint(ctx, "2dfs")
	if err != nil {
		return nil, rpcError("read descriptor %s: %v", filename, err)
	}
	desc, err := descriptor.ParseDeploy(filename, src.Data)
	if err != nil {
		if looksLikeDockerfile(src.Data) {
			return nil, fmt.Errorf("%s looks like a Dockerfile, but this is the 2DFS frontend; to deploy a CIR, point -f at a file holding {\"syntax\": \"FRONTEND\"} or nothing", filename)
		}
		return nil, err
	}
	return desc, nil
}

// contextImage returns the image a docker-image:// named context names.
func contextImage(contextName, value string) (string, error) {
	ref, ok := strings.CutPrefix(value, dockerImageScheme)
	if !ok || ref == "" {
		return "", fmt.Errorf("the %q named context is %q; it must name an image in a registry: %s=docker-image://REF", contextName, value, contextName)
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return "", fmt.Errorf("the %q named context: %q is not an image reference: %w", contextName, ref, err)
	}
	return ref, nil
}

// targetPlatforms are the build's --platform list, normalized and without
// repeats, or the build host's platform, as for any docker build.
func targetPlatforms(asked []ocispec.Platform, host ocispec.Platform) []ocispec.Platform {
	if len(asked) == 0 {
		return []ocispec.Platform{host}
	}
	var out []ocispec.Platform
	seen := map[string]bool{}
	for _, p := range asked {
		p = platforms.Normalize(p)
		if id := platforms.Format(p); !seen[id] {
			seen[id] = true
			out = append(out, p)
		}
	}
	return out
}

// checkPinned lists every target platform the CIR's base was not pinned for
// at once, before any work.
func checkPinned(rec *cir.Record, targets []ocispec.Platform) error {
	var missing []string
	for _, p := range targets {
		if _, ok := rec.Platform(platforms.Format(p)); !ok {
			missing = append(missing, platforms.Format(p))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("the CIR's base %s was pinned for %s at pre-build, not for %s; pre-build the CIR with --platform %s (the base must offer it)",
		rec.Base.Ref, strings.Join(rec.PlatformNames(), ", "), strings.Join(missing, ", "), strings.Join(missing, ","))
}

// resolveCIR reads the CIR's config through the gateway and pins the CIR by
// the digest the registry gave.
func resolveCIR(ctx context.Context, c client.Client, ref string) (DeployRequest, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return DeployRequest{}, err
	}
	// A CIR is one manifest, which resolves whatever the platform asked;
	// the host's platform picks the CIR out of an index that also holds
	// attestations.
	host := buildHost(c)
	_, dgst, dt, err := c.ResolveImageConfig(ctx, reference.TagNameOnly(named).String(), sourceresolver.Opt{
		LogName:  "[2dfs cir] resolve the CIR " + ref,
		ImageOpt: &sourceresolver.ResolveImageOpt{Platform: &host},
	})
	if err != nil {
		return DeployRequest{}, rpcError("the %q named context %s: %v", CIRContextName, ref, err)
	}
	return CIRRequest(ref, dgst, dt)
}

// CIRRequest reads a CIR's config (its record, its field record, the
// platform it declares) into a DeployRequest that pins the CIR by its
// manifest digest, which the assembled image records (recordedCIR).
func CIRRequest(ref string, manifest digest.Digest, config []byte, opts ...name.Option) (DeployRequest, error) {
	req, err := cirFromConfig(ref, config, field.FromConfig)
	if err != nil {
		return req, err
	}
	named, err := name.ParseReference(ref, opts...)
	if err != nil {
		return req, err
	}
	req.CIR = named.Context().Name() + "@" + manifest.String()
	return req, nil
}

// parseImage reads an image config.
func parseImage(config []byte) (*ocispec.Image, error) {
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return nil, err
	}
	return &img, nil
}

// mergePlatforms makes one multi-platform result of per-platform deploys,
// keyed as BuildKit's image exporter reads an index: a ref and an image
// config per platform ID.
func mergePlatforms(targets []ocispec.Platform, results []*client.Result) (*client.Result, error) {
	out := client.NewResult()
	var ps exptypes.Platforms
	for i, p := range targets {
		res := results[i]
		ref, err := res.SingleRef()
		if err != nil {
			return nil, err
		}
		config, ok := res.Metadata[exptypes.ExporterImageConfigKey]
		if !ok {
			return nil, fmt.Errorf("internal error: the deploy for %s gave no image config", platforms.Format(p))
		}
		id := platforms.Format(p)
		out.AddRef(id, ref)
		out.AddMeta(exptypes.ExporterImageConfigKey+"/"+id, config)
		ps.Platforms = append(ps.Platforms, exptypes.Platform{ID: id, Platform: p})
	}
	dt, err := json.Marshal(ps)
	if err != nil {
		return nil, err
	}
	out.AddMeta(exptypes.ExporterPlatformsKey, dt)
	out.AddMeta(commonexptypes.ExporterEpochKey, results[0].Metadata[commonexptypes.ExporterEpochKey])
	return out, nil
}
