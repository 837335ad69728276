package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
)

// The sources the "cir" named context takes besides docker-image://: an OCI
// layout on the client (buildx sends oci-layout://PATH@DIGEST as
// oci-layout://STORE-ID:TAG@DIGEST, STORE-ID a random session store name)
// and the result of another build of the same bake (bake's target:NAME,
// which buildx hands the frontend as input:KEY with the target's image
// config in input-metadata:KEY).
const (
	ociLayoutScheme = "oci-layout://"
	inputScheme     = "input:"
)

// app returns the CIR's image: App when it came from a named context
// (cirsource.go), else the CIR pulled from its registry by digest.
func (r DeployRequest) app() bkllb.State {
	if r.App != nil {
		return *r.App
	}
	return bkllb.Image(r.CIR, bkllb.Platform(r.CIRPlatform), bkllb.WithCustomName("[2dfs cir] application"))
}

// recordedCIR is how the assembled image's record names its CIR: by its
// manifest digest alone. Where the CIR was read from (a registry, a mirror,
// an OCI layout) is not part of the image, so one CIR gives one image from
// any of them; the provenance attestation names the source. A CIR built in
// the same bake has no manifest yet: "".
func (r DeployRequest) recordedCIR() string {
	if _, d, ok := strings.Cut(r.CIR, "@"); ok {
		return d
	}
	return r.CIR
}

// cirSource reads the CIR the "cir" named context names: its record, its
// field record and, unless it is in a registry, its image. hint is what a
// message that tells the user to run 2dfs deploy names the CIR by.
func cirSource(ctx context.Context, c client.Client, bc *dockerui.Client, value string) (req DeployRequest, hint string, err error) {
	switch {
	case strings.HasPrefix(value, dockerImageScheme):
		ref, err := contextImage(CIRContextName, value)
		if err != nil {
			return req, "", err
		}
		req, err = resolveCIR(ctx, c, ref)
		return req, ref, err
	case strings.HasPrefix(value, ociLayoutScheme):
		req, err = ociLayoutCIR(ctx, c, bc, value)
		return req, "REF", err
	case strings.HasPrefix(value, inputScheme):
		req, err = inputCIR(ctx, c, bc, value)
		return req, "REF", err
	}
	return req, "", fmt.Errorf("the %q named context is %q; it must name a CIR: %s=docker-image://REF, %s=oci-layout://PATH@sha256:DIGEST, or in bake a target that builds one (%s = \"target:NAME\")",
		CIRContextName, value, CIRContextName, CIRContextName, CIRContextName)
}

// ociLayoutCIR reads a CIR from an OCI layout on the client. Its config is
// resolved as dockerui resolves the layout (same store, same platform), for
// the raw bytes: the field record is a top-level key of the config, which
// dockerui's parsed image drops. The image itself is dockerui's.
func ociLayoutCIR(ctx context.Context, c client.Client, bc *dockerui.Client, value string) (DeployRequest, error) {
	spec := strings.TrimPrefix(value, ociLayoutScheme)
	parsed, err := reference.Parse(spec)
	if err != nil {
		return DeployRequest{}, fmt.Errorf("the %q named context %q: not an OCI layout reference: %w", CIRContextName, value, err)
	}
	named, ok := parsed.(reference.Named)
	if !ok {
		return DeployRequest{}, fmt.Errorf("the %q named context %q has no layout", CIRContextName, value)
	}
	digested, ok := parsed.(reference.Digested)
	if !ok {
		// buildx adds the digest; buildctl users give it.
		return DeployRequest{}, fmt.Errorf("the %q named context %q has no digest: name the CIR as oci-layout://PATH@sha256:DIGEST", CIRContextName, value)
	}
	what := fmt.Sprintf("the CIR in the OCI layout (%s)", digested.Digest())
	dummy, err := reference.WithDigest(reference.TrimNamed(mustNamed(CIRContextName)), digested.Digest())
	if err != nil {
		return DeployRequest{}, err
	}
	host := buildHost(c)
	_, dgst, dt, err := c.ResolveImageConfig(ctx, dummy.String(), sourceresolver.Opt{
		LogName: "[2dfs cir] resolve " + what,
		OCILayoutOpt: &sourceresolver.ResolveOCILayoutOpt{
			Platform: &host,
			Store:    sourceresolver.ResolveImageConfigOptStore{SessionID: c.BuildOpts().SessionID, StoreID: named.Name()},
		},
	})
	if err != nil {
		return DeployRequest{}, rpcError("the %q named context, %s: %v", CIRContextName, what, err)
	}
	req, err := cirFromConfig(what, dt, field.FromConfig)
	if err != nil {
		return req, err
	}
	req.CIR = dgst.String()
	var loaded digest.Digest
	st, err := loadNamedCIR(ctx, bc, dockerui.ContextOpt{Platform: &req.CIRPlatform, CaptureDigest: &loaded})
	if err != nil {
		return req, err
	}
	if loaded != dgst {
		return req, fmt.Errorf("%s: its config was read from %s, its image from %s", what, dgst, loaded)
	}
	req.App = st
	return req, nil
}

// inputCIR reads a CIR built by another target of the same bake: buildx
// gives the build's result as an input and its image config as metadata.
func inputCIR(ctx context.Context, c client.Client, bc *dockerui.Client, value string) (DeployRequest, error) {
	key := strings.TrimPrefix(value, inputScheme)
	what := "the CIR built by bake's target:"
	md, ok := c.BuildOpts().Opts["input-metadata:"+key]
	if !ok {
		return DeployRequest{}, fmt.Errorf("%s target gave no image config; is the target a 2DFS descriptor with \"dependencies\"?", what)
	}
	var m map[string][]byte
	if err := json.Unmarshal([]byte(md), &m); err != nil {
		return DeployRequest{}, fmt.Errorf("%s target: its metadata: %w", what, err)
	}
	dt, ok := m[exptypes.ExporterImageConfigKey]
	if !ok {
		return DeployRequest{}, fmt.Errorf("%s target gave no image config; is the target a 2DFS descriptor with \"dependencies\"?", what)
	}
	req, err := cirFromConfig(what+" target", dt, unexportedFieldRecord)
	if err != nil {
		return req, err
	}
	// No digest: the target's image is exported after this build starts.
	if req.App, err = loadNamedCIR(ctx, bc, dockerui.ContextOpt{}); err != nil {
		return req, err
	}
	return req, nil
}

// loadNamedCIR loads the "cir" named context's image with dockerui.
func loadNamedCIR(ctx context.Context, bc *dockerui.Client, opt dockerui.ContextOpt) (*bkllb.State, error) {
	nc, err := bc.NamedContext(CIRContextName, opt)
	if err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("internal error: the %q named context is gone", CIRContextName)
	}
	st, _, err := nc.Load(ctx)
	if err != nil {
		return nil, rpcError("the %q named context: %v", CIRContextName, err)
	}
	return st, nil
}

// cirFromConfig reads a CIR's record, field record (with appRecord) and
// declared platform from its config; what names the CIR in errors.
func cirFromConfig(what string, config []byte, appRecord func([]byte) (*field.Record, error)) (DeployRequest, error) {
	var req DeployRequest
	img, err := parseImage(config)
	if err != nil {
		return req, fmt.Errorf("config of %s: %w", what, err)
	}
	if req.Record, err = cir.FromConfig(img); err != nil {
		return req, fmt.Errorf("%s: %w", what, err)
	}
	if req.Record == nil {
		return req, fmt.Errorf("%s is not a CIR: its config has no %s label (build it from a descriptor with \"dependencies\")", what, cir.LabelKey)
	}
	if req.AppRecord, err = appRecord(config); err != nil {
		return req, fmt.Errorf("%s: %w", what, err)
	}
	if req.AppRecord == nil {
		return req, fmt.Errorf("%s has a CIR record but no %s record", what, field.LabelKey)
	}
	req.CIRPlatform = img.Platform
	return req, nil
}

func mustNamed(s string) reference.Named {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		panic(err)
	}
	return n
}

// unexportedFieldRecord reads the field record of a build result's config,
// which the exporter has not completed yet: it has no rootfs (the layers'
// diff IDs are added at export), so the record is checked against its
// history alone, one entry per layer, as field.FromConfig checks an
// exported image's.
func unexportedFieldRecord(config []byte) (*field.Record, error) {
	var cfg struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
		Allotments json.RawMessage   `json:"org.2dfs.field.allotments"`
		History    []ocispec.History `json:"history"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("field record: image config is not valid: %w", err)
	}
	label, ok := cfg.Config.Labels[field.LabelKey]
	if !ok {
		return nil, nil
	}
	r, err := field.Decode(label, cfg.Allotments)
	if err != nil {
		return nil, err
	}
	var layers []string
	for _, h := range cfg.History {
		if !h.EmptyLayer {
			layers = append(layers, h.Comment)
		}
	}
	if err := r.Check(layers, cfg.History); err != nil {
		return nil, err
	}
	return r, nil
}
