package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/direct"
	"github.com/tdfs-kit/tdfs/direct/layer"
	"github.com/tdfs-kit/tdfs/frontend"
)

// Engines of `2dfs build`.
const (
	engineAuto     = "auto"
	engineDirect   = "direct"
	engineBuildKit = "buildkit"
)

// chooseEngine says which engine runs and why. auto picks direct when the
// direct engine makes exactly what BuildKit would: a push or an OCI layout
// of a field built from the local context, with no BuildKit cache, no
// metadata file and no .dockerignore to apply; otherwise BuildKit.
func chooseEngine(f buildFlags, contextDir string) (string, string, error) {
	why := directBlocker(f, contextDir)
	switch f.engine {
	case engineDirect:
		if why != "" {
			return "", "", fmt.Errorf("--engine direct cannot build this: %s (use --engine buildkit)", why)
		}
		return engineDirect, "asked for", nil
	case engineBuildKit:
		return engineBuildKit, "asked for", nil
	case engineAuto, "":
		if why != "" {
			return engineBuildKit, why, nil
		}
		return engineDirect, "local sources, registry or OCI output", nil
	}
	return "", "", fmt.Errorf("--engine %q: want auto, direct or buildkit", f.engine)
}

// directBlocker names the first thing that needs BuildKit, or "".
func directBlocker(f buildFlags, contextDir string) string {
	switch {
	case len(f.cacheTo) > 0 || len(f.cacheFrom) > 0:
		return "--cache-to and --cache-from use BuildKit's cache"
	case f.noCache != "" && f.noCache != "false":
		return "--no-cache re-runs BuildKit's steps"
	case f.metadataFile != "":
		return "--metadata-file writes BuildKit's exporter response"
	}
	switch f.compression {
	case "zstd", "gzip", "uncompressed":
	default:
		return "--compression " + f.compression + " is BuildKit's"
	}
	for _, kv := range f.contexts {
		k, v, _ := strings.Cut(kv, "=")
		if k != frontend.BaseContextName || !strings.HasPrefix(v, "docker-image://") {
			return "--build-context " + kv + " is resolved by BuildKit"
		}
	}
	if _, err := os.Stat(filepath.Join(contextDir, ".dockerignore")); err == nil {
		return ".dockerignore is applied by BuildKit's context transfer"
	}
	// A descriptor that does not parse is left to the engine, which reports
	// it with the same located errors either way.
	if desc, err := readLocalDescriptor(f.file, contextDir); err == nil {
		if why := remoteSourceIn(desc); why != "" {
			return why
		}
	}
	if _, _, err := directOutput(f); err != nil {
		return err.Error()
	}
	// A read error is reported by the direct build itself.
	if d, err := readLocalDescriptor(f.file, contextDir); err == nil && d.Dependencies != nil {
		return "a descriptor with dependencies builds a CIR, which the frontend pre-builds"
	}
	return ""
}

// remoteSourceIn names the first allotment whose files are not in the
// local context (a URL, another image, a named context), or "": only
// BuildKit fetches those.
func remoteSourceIn(desc *descriptor.Descriptor) string {
	for _, a := range desc.Allotments {
		if a.From != "" {
			return fmt.Sprintf("allotment %s reads from %q, which BuildKit fetches", a.Cell, a.From)
		}
		for _, s := range a.Src {
			if descriptor.IsURL(s) {
				return fmt.Sprintf("allotment %s has a URL source, which BuildKit's HTTP source fetches", a.Cell)
			}
		}
	}
	return ""
}

// directOutput turns --tag/--push and --output into a direct output: a push
// of the tags (-t NAME --push, or one --output type=image,name=...,push=true),
// or one OCI layout tar; and whether OCI media types are written (else
// Docker's, asked for with oci-mediatypes=false as BuildKit's exporters are).
func directOutput(f buildFlags) (direct.Output, bool, error) {
	var out direct.Output
	oci := true
	names := f.tags
	errOutput := errors.New("only pushes (-t NAME --push, --output type=image,name=NAME,push=true) and --output type=oci,dest=FILE are built without BuildKit")
	switch {
	case len(f.outputs) == 0 && f.push && len(f.tags) > 0:
	case len(f.outputs) == 1 && !f.push:
		// buildctl's parser turns dest into a file writer (it creates the
		// file); read the same CSV fields here.
		fields, err := csv.NewReader(strings.NewReader(f.outputs[0])).Read()
		if err != nil {
			return out, false, fmt.Errorf("--output %s: %w", f.outputs[0], err)
		}
		attrs := map[string]string{}
		for _, kv := range fields {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return out, false, fmt.Errorf("--output %s: invalid value %s", f.outputs[0], kv)
			}
			attrs[strings.ToLower(k)] = v
		}
		allowed := []string{"type", "oci-mediatypes"}
		switch attrs["type"] {
		case client.ExporterOCI:
			if attrs["dest"] == "" || attrs["dest"] == "-" || attrs["tar"] == "false" {
				return out, false, errOutput
			}
			allowed = append(allowed, "dest", "tar")
			out.Layout = attrs["dest"]
		case client.ExporterImage:
			// An image output that is not pushed stays in buildkitd's
			// image store, which only BuildKit has.
			if push, err := strconv.ParseBool(attrs["push"]); err != nil || !push || attrs["name"] == "" || len(f.tags) > 0 {
				return out, false, errOutput
			}
			allowed = append(allowed, "name", "push")
			// Several names are one CSV field: "name=a,b".
			names = strings.Split(attrs["name"], ",")
		default:
			return out, false, errOutput
		}
		for k := range attrs {
			if !slices.Contains(allowed, k) {
				return out, false, fmt.Errorf("output option %s is BuildKit's", k)
			}
		}
		oci = !dockerMediaTypes(client.ExportEntry{Type: attrs["type"], Attrs: attrs})
	default:
		return out, false, errOutput
	}
	for _, t := range names {
		tag, err := name.NewTag(t)
		if err != nil {
			return out, false, fmt.Errorf("image name %s: %w", t, err)
		}
		out.Tags = append(out.Tags, tag)
	}
	return out, oci, nil
}

// runDirect builds with the direct engine.
func runDirect(ctx context.Context, f buildFlags, contextDir string, log io.Writer) error {
	out, oci, err := directOutput(f)
	if err != nil {
		return err
	}
	if !oci && (f.compression == "zstd" || f.compression == "estargz") {
		// What withCompression does for BuildKit: Docker's media types
		// have no zstd layer type containerd unpacks.
		f.compression = "gzip"
	}
	if out.Layout != "" {
		// The tags only name the image inside the layout.
		f.push = false
	}
	attrs, _, err := frontendAttrs(f)
	if err != nil {
		return err
	}
	desc, err := readLocalDescriptor(f.file, contextDir)
	if err != nil {
		return err
	}
	buildArgs, labels := map[string]string{}, map[string]string{}
	for k, v := range attrs {
		if a, ok := strings.CutPrefix(k, "build-arg:"); ok {
			buildArgs[a] = v
		}
		if l, ok := strings.CutPrefix(k, "label:"); ok {
			labels[l] = v
		}
	}
	epoch, err := frontend.SourceDateEpoch(buildArgs)
	if err != nil {
		return err
	}
	comp, err := layer.ParseCompression(f.compression, f.level)
	if err != nil {
		return err
	}
	var plats []ocispec.Platform
	for _, s := range f.platforms {
		for _, v := range strings.Split(s, ",") {
			p, err := platforms.Parse(v)
			if err != nil {
				return fmt.Errorf("--platform %s: %w", v, err)
			}
			plats = append(plats, platforms.Normalize(p))
		}
	}
	var baseRef string
	for _, kv := range f.contexts {
		if _, v, _ := strings.Cut(kv, "="); v != "" {
			baseRef = strings.TrimPrefix(v, "docker-image://")
		}
	}
	workers := min(max(runtime.NumCPU(), 2), 8)
	res, err := direct.Build(ctx, direct.Options{
		ContextDir:  contextDir,
		Descriptor:  desc,
		Platforms:   plats,
		Base:        baseRef,
		Epoch:       epoch,
		Labels:      labels,
		Compression: comp,
		OCI:         oci,
		Workers:     workers,
		Log:         log,
	}, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "[2dfs] direct: %d allotments read, %d unread (stat cache, blob in the registry)\n", res.Read, res.Unread)
	fmt.Fprintln(os.Stdout, res.Digest)
	return nil
}

// readLocalDescriptor reads the descriptor as the frontend finds it: -f, or
// the first of the default names in the context.
func readLocalDescriptor(file, contextDir string) (*descriptor.Descriptor, error) {
	paths := []string{file}
	if file == "" {
		paths = nil
		for _, n := range descriptor.DefaultFilenames {
			paths = append(paths, filepath.Join(contextDir, n))
		}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && file == "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read descriptor: %w", err)
		}
		return descriptor.Parse(filepath.Base(p), data)
	}
	return nil, fmt.Errorf("no descriptor found: looked for %s in %s (name another with -f)", strings.Join(descriptor.DefaultFilenames, ", "), contextDir)
}
