package main

import (
	"context"
	"fmt"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildctl/build"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/frontend"
	"github.com/tdfs-kit/tdfs/llb"
)

type deployFlags struct {
	buildFlags
	registryFlags
	platform   string
	helper     string
	lock       string
	lockUpdate bool
	maxLayers  int
}

func newDeployCommand() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "deploy [flags] REF",
		Short: "Assemble a CIR for one platform on a buildkitd: base, one layer per dependency, the application",
		Long: `Deploy is the CIR lazy-builder (docs/cir.md). It reads the CIR REF from its
registry, resolves its pip dependencies for the target platform and the
base's interpreter with pip in a helper container of the build host's
architecture, fetches every wheel pinned by its sha256 with BuildKit's HTTP
source, unpacks each into a layer of its own, merges base, wheels and
application and applies the CIR's config. Outputs are those of 2dfs build.`,
		Example: `  2dfs deploy registry.example.com/app:cir --platform linux/amd64 -t registry.example.com/app:amd64 --push`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd.Context(), f, args[0])
		},
	}
	fl := cmd.Flags()
	f.registerSolveFlags(fl)
	fl.StringVar(&f.platform, "platform", "", "target platform (os/arch[/variant]), required")
	fl.StringVar(&f.helper, "helper", "", "helper image with python3 and pip for the build host's platform (default: the CIR's base)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "secret for the deploy, as in buildctl: id=NAME,src=FILE or id=NAME,env=VAR (the CIR's pipAuthSecret names one; the file holds the index's whole Authorization header value)")
	fl.StringVar(&f.lock, "lock", "", "lock file: pins the resolved closure per platform; written when absent or when the platform has no entry (docs/cir.md)")
	fl.BoolVar(&f.lockUpdate, "lock-update", false, "resolve afresh and replace the platform's entry in the --lock file")
	fl.IntVar(&f.maxLayers, "max-layers", cir.DefaultMaxLayers, "layer budget of the assembled image (base, dependencies, application); apt packages beyond it share layers; 0: no budget")
	f.registryFlags.register(fl)
	_ = cmd.MarkFlagRequired("platform")
	return cmd
}

// readCIR reads a CIR's config from its registry: its record, its field
// record and the platform it declares, and pins it by digest.
func readCIR(ctx context.Context, ref string, f *registryFlags) (frontend.DeployRequest, error) {
	var req frontend.DeployRequest
	src, err := openStore(ctx, ref, f)
	if err != nil {
		return req, err
	}
	manifest, mediaType, err := src.Manifest(ctx, "")
	if err != nil {
		return req, fmt.Errorf("read the CIR %s: %w", ref, err)
	}
	if partition.IsIndex(mediaType) {
		return req, fmt.Errorf("%s is an index; a CIR is one manifest (was it built from a descriptor with \"dependencies\"?)", ref)
	}
	cd, err := partition.ConfigOf(manifest)
	if err != nil {
		return req, err
	}
	dt, err := src.Blob(ctx, cd, partition.MaxConfigBytes)
	if err != nil {
		return req, fmt.Errorf("read the config of %s: %w", ref, err)
	}
	// The same reading as the frontend's cir named context.
	return frontend.CIRRequest(ref, digest.FromBytes(manifest), dt, f.nameOptions()...)
}

func runDeploy(ctx context.Context, f deployFlags, ref string) error {
	target, err := platforms.Parse(f.platform)
	if err != nil {
		return fmt.Errorf("--platform %q: %w", f.platform, err)
	}
	exports, err := exportEntries(f.buildFlags)
	if err != nil {
		return err
	}
	if exports, err = withCompression(exports, f.compression, f.level); err != nil {
		return err
	}
	req, err := readCIR(ctx, ref, &f.registryFlags)
	if err != nil {
		return err
	}
	req.Target = target
	req.Helper = f.helper
	req.Epoch = llb.DefaultEpoch
	switch {
	case f.maxLayers < 0:
		return fmt.Errorf("--max-layers %d: the layer budget is a number of layers, or 0 for none", f.maxLayers)
	case f.maxLayers == 0:
		req.MaxLayers = -1 // DeployRequest's 0 is the default budget
	default:
		req.MaxLayers = f.maxLayers
	}
	lock, err := openLock(f.lock, f.lockUpdate, &req, target)
	if err != nil {
		return err
	}

	c, err := client.New(ctx, f.addr)
	if err != nil {
		return fmt.Errorf("connect to buildkitd at %s: %w", f.addr, err)
	}
	defer c.Close()
	secrets, err := build.ParseSecret(f.secrets)
	if err != nil {
		return fmt.Errorf("--secret: %w", err)
	}
	cacheExports, err := build.ParseExportCache(f.cacheTo)
	if err != nil {
		return err
	}
	cacheImports, err := build.ParseImportCache(f.cacheFrom)
	if err != nil {
		return err
	}
	solveOpt := client.SolveOpt{
		Exports:      exports,
		CacheExports: cacheExports,
		CacheImports: cacheImports,
		// BuildKit's client adds the cache imports here; a nil map panics.
		FrontendAttrs: map[string]string{},
		Session:       sessionAttachables(secrets),
	}
	// The layer budget's warnings are printed last, as 2dfs build's are.
	resp, err := solve(ctx, c, solveOpt, "2dfs-deploy", f.progress, frontend.Deploy(req))
	if err != nil {
		return err
	}
	if err := lock.save(req); err != nil {
		return err
	}
	return reportSolve(resp, f.metadataFile)
}
