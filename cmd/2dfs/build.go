package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildctl/build"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tonistiigi/fsutil"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/frontend"
)

type buildFlags struct {
	addr         string
	file         string
	tags         []string
	push         bool
	outputs      []string
	cacheTo      []string
	cacheFrom    []string
	platforms    []string
	buildArgs    []string
	labels       []string
	contexts     []string
	secrets      []string
	progress     string
	metadataFile string
	noCache      string
	compression  string
	level        int
	engine       string
}

func newBuildCommand() *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [flags] [CONTEXT]",
		Short: "Build a 2DFS field image with BuildKit, running the frontend in-process",
		Long: `Build reads a 2DFS descriptor (2dfs.json by default) from the build context
and builds it on a buildkitd, with the frontend running in this process: no
frontend image is needed. Flags follow buildctl and docker buildx.`,
		Example: `  2dfs build -t registry.example.com/models/llm:v1 --push .
  2dfs build --platform linux/amd64,linux/arm64 -f fields/2dfs.yaml --output type=oci,dest=out.tar .`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			contextDir := "."
			if len(args) == 1 {
				contextDir = args[0]
			}
			return runBuild(cmd.Context(), f, contextDir)
		},
	}
	fl := cmd.Flags()
	f.registerSolveFlags(fl)
	fl.StringVarP(&f.file, "file", "f", "", "descriptor file (default: 2dfs.json, 2dfs.yaml or 2dfs.yml in CONTEXT)")
	fl.StringSliceVar(&f.platforms, "platform", nil, "target platforms (linux/amd64,linux/arm64)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "build argument KEY=VALUE (SOURCE_DATE_EPOCH sets file and config times)")
	fl.StringArrayVar(&f.labels, "label", nil, "image label KEY=VALUE")
	fl.StringArrayVar(&f.contexts, "build-context", nil, "named context NAME=VALUE (base=docker-image://... overrides the descriptor's base; cir=docker-image://REF assembles the CIR REF for --platform, docs/cir.md)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "secret for the build, as in buildctl: id=NAME,src=FILE or id=NAME,env=VAR (an allotment's authSecret names one; the file holds the whole Authorization header value)")
	fl.StringVar(&f.noCache, "no-cache", "", "re-run allotments instead of taking them from the build cache: all of them, or with --no-cache=`CELLS` those listed as row.col (--no-cache=1.2,0.0)")
	fl.Lookup("no-cache").NoOptDefVal = "true"
	fl.StringVar(&f.engine, "engine", engineAuto, "build engine: direct (one pass per allotment, straight to the registry or OCI layout), buildkit, or auto (direct when it can make the same image)")
	return cmd
}

// registerSolveFlags registers the flags every command that solves on a
// buildkitd shares with buildctl: the daemon, outputs, caches, progress and
// layer compression (2dfs build and 2dfs deploy).
func (f *buildFlags) registerSolveFlags(fl *pflag.FlagSet) {
	defaultAddr := os.Getenv("BUILDKIT_HOST")
	if defaultAddr == "" {
		defaultAddr = "unix:///run/buildkit/buildkitd.sock"
	}
	fl.StringVar(&f.addr, "addr", defaultAddr, "buildkitd address (default from BUILDKIT_HOST)")
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "image name to export (repeatable)")
	fl.BoolVar(&f.push, "push", false, "push the image named by --tag")
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, "output, as in buildctl (type=image,name=...,push=true | type=oci,dest=... | type=local,dest=...)")
	fl.StringArrayVar(&f.cacheTo, "cache-to", nil, "cache export, as in buildctl (type=registry,ref=...,mode=max)")
	fl.StringArrayVar(&f.cacheFrom, "cache-from", nil, "cache import, as in buildctl (type=registry,ref=...)")
	fl.StringVar(&f.progress, "progress", "auto", "progress output: auto, plain, tty, quiet or rawjson")
	fl.StringVar(&f.metadataFile, "metadata-file", "", "write the result metadata (image digest) to this file")
	fl.StringVar(&f.compression, "compression", "zstd", "layer compression for image outputs that set none: zstd, gzip, estargz or uncompressed")
	fl.IntVar(&f.level, "compression-level", 1, "compression level for --compression (-1: the compressor's default)")
}

func runBuild(ctx context.Context, f buildFlags, contextDir string) error {
	engine, why, err := chooseEngine(f, contextDir)
	if err != nil {
		return err
	}
	log := io.Writer(os.Stderr)
	if f.progress == "quiet" || f.progress == "rawjson" {
		log = io.Discard
	}
	fmt.Fprintf(log, "[2dfs] engine: %s (%s)\n", engine, why)
	if engine == engineDirect {
		return runDirect(ctx, f, contextDir, log)
	}
	attrs, localDirs, err := frontendAttrs(f)
	if err != nil {
		return err
	}
	exports, err := exportEntries(f)
	if err != nil {
		return err
	}
	if exports, err = withCompression(exports, f.compression, f.level); err != nil {
		return err
	}
	cacheExports, err := build.ParseExportCache(f.cacheTo)
	if err != nil {
		return err
	}
	cacheImports, err := build.ParseImportCache(f.cacheFrom)
	if err != nil {
		return err
	}

	descriptorDir := contextDir
	if f.file != "" {
		descriptorDir = filepath.Dir(f.file)
		attrs["filename"] = filepath.Base(f.file)
	}
	localDirs["context"] = contextDir
	localDirs["dockerfile"] = descriptorDir
	localMounts := map[string]fsutil.FS{}
	for name, dir := range localDirs {
		fs, err := fsutil.NewFS(dir)
		if err != nil {
			return fmt.Errorf("local folder %s for %s: %w", dir, name, err)
		}
		localMounts[name] = fs
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
	ociStores, err := ociLayoutStores(attrs)
	if err != nil {
		return err
	}
	solveOpt := client.SolveOpt{
		OCIStores:     ociStores,
		SharedKey:     sharedKey(contextDir),
		Exports:       exports,
		CacheExports:  cacheExports,
		CacheImports:  cacheImports,
		FrontendAttrs: attrs,
		LocalMounts:   localMounts,
		Session:       sessionAttachables(secrets),
	}

	// The frontend's own error names the allotment and the URL; buildkitd
	// answers the build with the failed vertex's bare message instead.
	var frontendErr error
	resp, err := solve(ctx, c, solveOpt, "2dfs", f.progress, func(ctx context.Context, c gateway.Client) (*gateway.Result, error) {
		res, err := frontend.Build(ctx, c)
		frontendErr = err
		return res, err
	})
	if err != nil {
		if frontendErr != nil && !errors.Is(frontendErr, context.Canceled) {
			err = frontendErr
		}
		// buildkitd's messages may repeat a signed URL's query.
		return errors.New(descriptor.RedactText(err.Error()))
	}
	return reportSolve(resp, f.metadataFile)
}

// frontendAttrs turns flags into frontend options. Named contexts that are
// local folders become local mounts, as docker buildx does it; it returns
// them by mount name.
func frontendAttrs(f buildFlags) (map[string]string, map[string]string, error) {
	attrs := map[string]string{}
	localDirs := map[string]string{}
	if len(f.platforms) > 0 {
		attrs["platform"] = strings.Join(f.platforms, ",")
	}
	for _, kv := range f.buildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			v, ok = os.LookupEnv(k)
			if !ok {
				continue
			}
		}
		attrs["build-arg:"+k] = v
	}
	for _, kv := range f.labels {
		k, v, _ := strings.Cut(kv, "=")
		attrs["label:"+k] = v
	}
	for _, kv := range f.contexts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			return nil, nil, fmt.Errorf("--build-context %q: want NAME=VALUE", kv)
		}
		if !strings.Contains(v, "://") {
			if st, err := os.Stat(v); err == nil && st.IsDir() {
				mount := "context-" + k
				localDirs[mount] = v
				v = "local:" + mount
			}
		}
		attrs["context:"+k] = v
	}
	// BuildKit's no-cache opt, as buildctl and buildx send it: empty for
	// everything, else the names (here cells) to re-run. "true" and "false"
	// keep the flag's old boolean meaning.
	switch f.noCache {
	case "", "false":
	case "true":
		attrs["no-cache"] = ""
	default:
		attrs["no-cache"] = f.noCache
	}
	return attrs, localDirs, nil
}

// exportEntries turns --tag/--push and --output into exporter entries.
func exportEntries(f buildFlags) ([]client.ExportEntry, error) {
	exports, err := build.ParseOutput(f.outputs)
	if err != nil {
		return nil, err
	}
	if len(f.tags) == 0 {
		if f.push {
			return nil, fmt.Errorf("--push needs an image name: add -t NAME")
		}
		return exports, nil
	}
	for _, e := range exports {
		if e.Type == client.ExporterImage {
			return nil, fmt.Errorf("--tag and an --output of type=image both name the image; use one")
		}
	}
	attrs := map[string]string{"name": strings.Join(f.tags, ",")}
	if f.push {
		attrs["push"] = "true"
	}
	return append(exports, client.ExportEntry{Type: client.ExporterImage, Attrs: attrs}), nil
}

// dockerMediaTypes says whether an output writes Docker media types: asked
// for with oci-mediatypes=false, or the docker exporter's default.
func dockerMediaTypes(e client.ExportEntry) bool {
	v, set := e.Attrs["oci-mediatypes"]
	if !set {
		return e.Type == client.ExporterDocker
	}
	oci, err := strconv.ParseBool(v)
	return err == nil && !oci
}

// withCompression sets the layer compression on every image-producing
// output that does not choose one. Allotments are large and mostly
// incompressible (model weights), so the default is zstd at its fastest
// level: BuildKit's gzip default spends most of a cold build compressing.
// Runtimes from containerd 1.5 and Docker 23 pull zstd layers; --compression
// gzip keeps the old default for tools that need it.
//
// BuildKit reuses the blob an earlier export of the same layer made, at
// whatever compression that was. force-compression would re-compress the
// base image's layers too (no longer the registry's blobs), so it is not
// set: a builder that exported an allotment as gzip before gives it as gzip
// again (README, "the same digest at the same compression").
func withCompression(exports []client.ExportEntry, compression string, level int) ([]client.ExportEntry, error) {
	switch compression {
	case "zstd", "gzip", "estargz", "uncompressed":
	default:
		return nil, fmt.Errorf("--compression %q: want zstd, gzip, estargz or uncompressed", compression)
	}
	for i, e := range exports {
		switch e.Type {
		case client.ExporterImage, client.ExporterOCI, client.ExporterDocker:
		default:
			continue
		}
		if _, set := e.Attrs["compression"]; set {
			continue
		}
		c := compression
		if dockerMediaTypes(e) && (c == "zstd" || c == "estargz") {
			// Docker's media types have no zstd layer type; BuildKit would
			// write one containerd cannot unpack.
			c = "gzip"
		}
		attrs := map[string]string{"compression": c}
		if level >= 0 && c != "uncompressed" {
			attrs["compression-level"] = fmt.Sprint(level)
		}
		for k, v := range e.Attrs {
			attrs[k] = v
		}
		exports[i].Attrs = attrs
	}
	return exports, nil
}

// sharedKey names the client's copy of a context folder for BuildKit, which
// keeps one incremental copy of each local source per shared key. Without
// one, every folder built on a buildkitd shares the empty key, so building
// another folder evicts this one and the next build re-sends every file.
// Like buildx, the key is the folder plus this machine.
func sharedKey(contextDir string) string {
	abs, err := filepath.Abs(contextDir)
	if err != nil {
		abs = contextDir
	}
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(host + "\x00" + abs))
	return filepath.Base(abs) + ":" + hex.EncodeToString(sum[:8])
}

func printWarnings(w io.Writer, warnings []client.VertexWarning) {
	for _, vw := range warnings {
		fmt.Fprintf(w, "WARNING: %s\n", vw.Short)
	}
}
