package direct

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bkllb "github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/direct/layer"
	"github.com/tdfs-kit/tdfs/field"
	"github.com/tdfs-kit/tdfs/llb"
)

// Options are the inputs of a direct build.
type Options struct {
	// ContextDir is the local build context folder.
	ContextDir string
	Descriptor *descriptor.Descriptor
	// Platforms are the target platforms; none builds one image for the
	// default platform, more than one builds an index.
	Platforms []ocispec.Platform
	// Base overrides the descriptor's base with an image reference ("" keeps
	// it), as --build-context base=docker-image://REF does.
	Base        string
	Epoch       time.Time
	Labels      map[string]string
	Compression layer.Compression
	// OCI selects OCI media types; false writes Docker's.
	OCI bool
	// ForceCompression converts base layers of another compression to
	// Compression, as BuildKit's force-compression=true does; without it
	// they are kept (and mounted) as the base has them, as BuildKit keeps
	// them. `2dfs build` does not force it.
	ForceCompression bool
	// Workers bounds how many allotments are written at once.
	Workers int
	// CacheDir holds the stat cache; "" uses the user cache folder, "-"
	// disables it.
	CacheDir string
	Keychain authn.Keychain
	// Log hears one line per step.
	Log io.Writer
}

// Output is where a build goes: the registry under Tags, or an OCI layout
// tar at Layout (where Tags only name the image).
type Output struct {
	Tags   []name.Tag
	Layout string
}

// Result is what a build made.
type Result struct {
	// Digest is the manifest's, or the index's for several platforms.
	Digest digest.Digest
	// Read counts allotment layers whose sources were read (and the layer
	// sent or written); Unread those the stat cache knew and the registry
	// already had (or mounted from another repository).
	Read, Unread int
}

// allotmentLayer is one allotment's layer once written or found.
type allotmentLayer struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
	file   string // the blob in a temporary file, for layout output
}

// Build builds the field and sends it to out. Nothing is tagged unless every
// blob the manifests reference is in the target repository.
func Build(ctx context.Context, opt Options, out Output) (*Result, error) {
	if len(out.Tags) == 0 && out.Layout == "" {
		return nil, errors.New("the direct engine needs an output: a registry push (-t NAME --push) or --output type=oci,dest=FILE")
	}
	if opt.Keychain == nil {
		opt.Keychain = authn.DefaultKeychain
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	cacheDir := opt.CacheDir
	switch cacheDir {
	case "":
		cacheDir = defaultCacheDir()
	case "-":
		cacheDir = ""
	}
	cache := statCache{dir: cacheDir}

	// The limits the frontend applies: the image must be one BuildKit could
	// have exported, and pulled, just the same.
	if err := opt.Descriptor.CheckLimits(); err != nil {
		return nil, err
	}
	numPlatforms := max(1, len(opt.Platforms))
	if err := opt.Descriptor.CheckImageDescriptors(numPlatforms, 0); err != nil {
		return nil, err
	}
	planned, err := Plan(opt.Descriptor, opt.ContextDir)
	if err != nil {
		return nil, err
	}
	if len(planned) == 0 {
		// The frontend's warning, word for word.
		fmt.Fprintln(opt.Log, "WARNING: the descriptor has no allotments: the image is the base image alone")
	}
	auth := remote.WithAuthFromKeychain(opt.Keychain)
	var pusher *remote.Pusher
	var repo name.Repository
	if len(out.Tags) > 0 && out.Layout == "" {
		repo = out.Tags[0].Repository
		for _, t := range out.Tags[1:] {
			if t.Repository.Name() != repo.Name() {
				return nil, fmt.Errorf("the direct engine pushes to one repository; tags %s and %s differ", out.Tags[0], t)
			}
		}
		if pusher, err = remote.NewPusher(auth, remote.WithContext(ctx), remote.WithJobs(opt.Workers), remote.WithTransport(uploadTransport())); err != nil {
			return nil, err
		}
	}

	// Bases first: a bad base reference fails before any upload. Each
	// platform's base, and the check client's handshake with the target,
	// are round trips of their own: they run at once, and the first error
	// by platform is reported, whichever came back first.
	targets := opt.Platforms
	if len(targets) == 0 {
		targets = []ocispec.Platform{platforms.DefaultSpec()}
	}
	bases := make([]*base, len(targets))
	baseErrs := make([]error, len(targets))
	var check *registryCheck
	var checkErr error
	var wg sync.WaitGroup
	for i, p := range targets {
		wg.Go(func() { bases[i], baseErrs[i] = resolveBase(ctx, opt, p, auth) })
	}
	if pusher != nil {
		wg.Go(func() { check, checkErr = newRegistryCheck(ctx, repo, opt.Keychain) })
	}
	wg.Wait()
	for i := range targets {
		if baseErrs[i] != nil {
			return nil, baseErrs[i]
		}
		if bases[i] != nil {
			if err := opt.Descriptor.CheckImageDescriptors(numPlatforms, len(bases[i].config.RootFS.DiffIDs)); err != nil {
				return nil, err
			}
		}
	}
	if checkErr != nil {
		return nil, checkErr
	}

	// Every allotment in one pass each, a bounded number at a time.
	layers := make([]allotmentLayer, len(planned))
	var mu sync.Mutex
	res := &Result{}
	// Allotments the stat cache knows are only asked about (a HEAD), up
	// to checkJobs at once; reading and writing a layer takes one of
	// opt.Workers write slots.
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(max(opt.Workers, checkJobs))
	writeSlots := make(chan struct{}, opt.Workers)
	var tmpFiles []string
	defer func() {
		for _, f := range tmpFiles {
			os.Remove(f)
		}
	}()
	for i, a := range planned {
		eg.Go(func() error {
			var tree *layer.Tree
			var key digest.Digest
			var cached cachedLayer
			var hit bool
			var scanStart time.Time
			scan := func() error {
				scanStart = time.Now()
				var err error
				if tree, err = layer.Scan(opt.ContextDir, a); err != nil {
					return err
				}
				key = cacheKey(tree, opt)
				cached, hit = cache.get(key)
				if hit && cached.MediaType != opt.Compression.MediaType() {
					hit = false
				}
				return nil
			}
			if err := scan(); err != nil {
				return err
			}
			if hit && check != nil && check.hasBlob(ectx, ocispec.Descriptor{Digest: cached.Digest, Size: cached.Size}) {
				// Nothing to read or send. The stat cache learns nothing
				// new unless this repository is new to it.
				layers[i].desc = ocispec.Descriptor{MediaType: opt.Compression.MediaType(), Digest: cached.Digest, Size: cached.Size}
				layers[i].diffID = cached.DiffID
				if !slices.Contains(cached.Repos, repo.Name()) {
					entry := cached
					entry.Repos = []string{repo.Name()}
					cache.put(key, entry, tree.Newest(), scanStart)
				}
				mu.Lock()
				res.Unread++
				mu.Unlock()
				fmt.Fprintf(opt.Log, "[2dfs %s] %s %s (%d bytes) in the registry\n", a.Cell, cached.Digest, layerNote(hit), cached.Size)
				return nil
			}
			select {
			case writeSlots <- struct{}{}:
			case <-ectx.Done():
				return ectx.Err()
			}
			defer func() { <-writeSlots }()
			if !hit {
				// Scanned again now that it is this allotment's turn: the
				// write checks the files against the scan, which may be
				// minutes old behind other writes.
				if err := scan(); err != nil {
					return err
				}
			}
			l := &streamLayer{ctx: ectx, mediaType: opt.Compression.MediaType(), write: func(ctx context.Context, w io.Writer) (layer.Written, error) {
				return layer.Write(ctx, w, tree, opt.Epoch, opt.Compression)
			}}
			if hit {
				l.want = &cached
			}
			var how string
			switch {
			case pusher != nil:
				var up v1.Layer = l
				if hit {
					if from := mountSource(cached.Repos, repo); from != nil {
						up = &remote.MountableLayer{Layer: l, Reference: from.Digest(cached.Digest.String())}
					}
				}
				if err := pusher.Upload(ectx, repo, up); err != nil {
					return fmt.Errorf("allotment %s: upload to %s: %w", a.Cell, repo, err)
				}
				how = "uploaded"
				if l.written() == nil {
					how = "in the registry"
				}
			default:
				f, err := os.CreateTemp("", "2dfs-layer-*")
				if err != nil {
					return err
				}
				mu.Lock()
				tmpFiles = append(tmpFiles, f.Name())
				mu.Unlock()
				w, err := layer.Write(ectx, f, tree, opt.Epoch, opt.Compression)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("allotment %s: %w", a.Cell, err)
				}
				l.done = &w
				layers[i].file = f.Name()
				how = "written"
			}
			w := l.written()
			if w == nil { // found in the registry from the stat cache
				w = &layer.Written{Digest: cached.Digest, DiffID: cached.DiffID, Size: cached.Size}
			}
			layers[i].desc = ocispec.Descriptor{MediaType: opt.Compression.MediaType(), Digest: w.Digest, Size: w.Size}
			layers[i].diffID = w.DiffID
			entry := cachedLayer{Digest: w.Digest, DiffID: w.DiffID, Size: w.Size, MediaType: opt.Compression.MediaType()}
			if pusher != nil {
				entry.Repos = []string{repo.Name()}
			}
			cache.put(key, entry, tree.Newest(), scanStart)
			mu.Lock()
			if l.written() != nil {
				res.Read++
			} else {
				res.Unread++
			}
			mu.Unlock()
			fmt.Fprintf(opt.Log, "[2dfs %s] %s %s (%d bytes) %s\n", a.Cell, w.Digest, layerNote(hit), w.Size, how)
			return nil
		})
	}
	converted := map[digest.Digest]*allotmentLayer{}
	if opt.ForceCompression {
		converted = convertBases(ectx, eg, writeSlots, bases, opt, cache, pusher, repo, &mu, &tmpFiles)
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	for _, b := range bases {
		if b != nil {
			b.convertedTo(converted)
		}
	}

	// Configs and manifests, as the frontend and exporter write them.
	var manifests []Manifest
	for i, p := range targets {
		m, err := platformManifest(planned, layers, bases[i], p, opt)
		if err != nil {
			return nil, err
		}
		manifests = append(manifests, m)
	}
	top := manifests[0].Manifest
	var index *Blob
	if len(opt.Platforms) > 1 {
		idx, err := MakeIndex(manifests, opt.OCI)
		if err != nil {
			return nil, err
		}
		index, top = &idx, idx
	}
	res.Digest = top.Descriptor.Digest

	if out.Layout != "" {
		if err := writeLayout(ctx, out.Layout, manifests, index, layers, converted, bases, out.Tags); err != nil {
			return nil, err
		}
		fmt.Fprintf(opt.Log, "[2dfs] wrote %s to %s\n", res.Digest, out.Layout)
	}
	if pusher != nil {
		if err := push(ctx, pusher, check, repo, opt, manifests, index, bases, out.Tags); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func layerNote(hit bool) string {
	if hit {
		return "(stat cache)"
	}
	return "(read)"
}

// cacheKey names an allotment's layer by its inputs and the settings that
// shape its bytes.
func cacheKey(tree *layer.Tree, opt Options) digest.Digest {
	level := -1
	if opt.Compression.Level != nil {
		level = *opt.Compression.Level
	}
	return digest.FromString(fmt.Sprintf("2dfs-direct v1\n%s\n%d\n%s %d\n", tree.Fingerprint(), opt.Epoch.Unix(), opt.Compression.Name, level))
}

// mountSource picks a repository on the target's registry the blob was
// pushed to before, to mount it from.
func mountSource(repos []string, target name.Repository) *name.Repository {
	for _, r := range repos {
		if r == target.Name() {
			continue
		}
		other, err := name.NewRepository(r)
		if err == nil && other.RegistryStr() == target.RegistryStr() {
			return &other
		}
	}
	return nil
}

// base is the base image of one platform.
type base struct {
	ref    name.Reference
	image  v1.Image
	config *dockerspec.DockerOCIImage
	// layers are the base manifest's; exported are the image's, where
	// layers in another compression are converted as BuildKit converts them.
	layers   []ocispec.Descriptor
	exported []ocispec.Descriptor
}

func (b *base) convertedTo(converted map[digest.Digest]*allotmentLayer) {
	b.exported = nil
	for _, d := range b.layers {
		if c, ok := converted[d.Digest]; ok {
			d = c.desc
		}
		b.exported = append(b.exported, d)
	}
}

// convertBases converts, in eg, every base layer whose compression is not
// the build's (BuildKit's exporter forces the build's compression on them,
// decompressing and compressing again; the diff_id stays). The stat cache
// remembers conversions by the base blob's digest, so a re-run downloads
// nothing when the converted blob is in the registry.
func convertBases(ctx context.Context, eg *errgroup.Group, writeSlots chan struct{}, bases []*base, opt Options, cache statCache, pusher *remote.Pusher, repo name.Repository, mu *sync.Mutex, tmpFiles *[]string) map[digest.Digest]*allotmentLayer {
	converted := map[digest.Digest]*allotmentLayer{}
	for _, b := range bases {
		if b == nil {
			continue
		}
		for _, d := range b.layers {
			if opt.Compression.Compressed(d.MediaType) || converted[d.Digest] != nil {
				continue
			}
			out := &allotmentLayer{}
			converted[d.Digest] = out
			eg.Go(func() error {
				select {
				case writeSlots <- struct{}{}:
				case <-ctx.Done():
					return ctx.Err()
				}
				defer func() { <-writeSlots }()
				src, err := b.image.LayerByDigest(toHash(d.Digest))
				if err != nil {
					return err
				}
				level := -1
				if opt.Compression.Level != nil {
					level = *opt.Compression.Level
				}
				key := digest.FromString(fmt.Sprintf("2dfs-direct convert v1\n%s\n%s %d\n", d.Digest, opt.Compression.Name, level))
				cached, hit := cache.get(key)
				l := &streamLayer{ctx: ctx, mediaType: opt.Compression.MediaType(), write: func(ctx context.Context, w io.Writer) (layer.Written, error) {
					rc, err := src.Uncompressed()
					if err != nil {
						return layer.Written{}, err
					}
					defer rc.Close()
					return layer.Recompress(ctx, w, rc, opt.Compression)
				}}
				if hit {
					l.want = &cached
				}
				if pusher != nil {
					if err := pusher.Upload(ctx, repo, l); err != nil {
						return fmt.Errorf("base layer %s from %s, converted to %s: %w", d.Digest, b.ref, opt.Compression.Name, err)
					}
				} else {
					f, err := os.CreateTemp("", "2dfs-layer-*")
					if err != nil {
						return err
					}
					mu.Lock()
					*tmpFiles = append(*tmpFiles, f.Name())
					mu.Unlock()
					w, err := l.write(ctx, f)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						return fmt.Errorf("base layer %s from %s: %w", d.Digest, b.ref, err)
					}
					l.done = &w
					out.file = f.Name()
				}
				w := l.written()
				if w == nil {
					w = &layer.Written{Digest: cached.Digest, DiffID: cached.DiffID, Size: cached.Size}
				}
				out.desc = ocispec.Descriptor{MediaType: opt.Compression.MediaType(), Digest: w.Digest, Size: w.Size}
				out.diffID = w.DiffID
				cache.put(key, cachedLayer{Digest: w.Digest, DiffID: w.DiffID, Size: w.Size, MediaType: opt.Compression.MediaType()}, time.Time{}, time.Now())
				fmt.Fprintf(opt.Log, "[2dfs base] %s converted to %s: %s (%d bytes)\n", d.Digest, opt.Compression.Name, w.Digest, w.Size)
				return nil
			})
		}
	}
	return converted
}

// resolveBase reads the base's config and layers for a platform (nil for
// scratch). Its blobs are not downloaded: the push mounts them.
func resolveBase(ctx context.Context, opt Options, p ocispec.Platform, auth remote.Option) (*base, error) {
	ref := opt.Base
	where := "--build-context base"
	if ref == "" {
		ref = opt.Descriptor.Base
		where = fmt.Sprintf("%s:%d:%d: base %q", opt.Descriptor.Filename, opt.Descriptor.BasePos.Line, opt.Descriptor.BasePos.Column, ref)
	}
	if ref == "" || ref == "scratch" {
		return nil, nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid image reference: %w", where, err)
	}
	img, err := remote.Image(r, auth, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures,
	}))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", where, err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%s: image config is not valid JSON: %w", where, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", where, err)
	}
	b := &base{ref: r, image: img, config: &cfg}
	for _, l := range m.Layers {
		b.layers = append(b.layers, ocispec.Descriptor{MediaType: string(l.MediaType), Digest: digest.Digest(l.Digest.String()), Size: l.Size, Annotations: l.Annotations})
	}
	return b, nil
}

// platformManifest makes one platform's config through llb.Convert, the
// frontend's own code, so the config and field record are written once.
func platformManifest(planned []descriptor.PlannedAllotment, layers []allotmentLayer, b *base, p ocispec.Platform, opt Options) (Manifest, error) {
	var baseImg *dockerspec.DockerOCIImage
	var baseLayers []ocispec.Descriptor
	if b != nil {
		baseImg, baseLayers = b.config, b.exported
	}
	conv, err := llb.Convert(planned, llb.Options{
		Context:   bkllb.Scratch(),
		Base:      bkllb.Scratch(),
		BaseImage: baseImg,
		Platform:  p,
		Epoch:     opt.Epoch,
		Labels:    opt.Labels,
		Config:    opt.Descriptor.Config,
	})
	if err != nil {
		return Manifest{}, err
	}
	if w := field.RunnableWarning(conv.Record.BaseLayers, len(conv.Record.Allotments)); w != "" {
		if len(opt.Platforms) > 1 {
			w = platforms.Format(p) + ": " + w
		}
		fmt.Fprintln(opt.Log, "WARNING: "+w)
	}
	in := ImageInput{
		Image:      conv.Image,
		Record:     conv.Record,
		BaseImage:  baseImg,
		BaseLayers: baseLayers,
		Epoch:      opt.Epoch,
		Platform:   platforms.Normalize(p),
		OCI:        opt.OCI,
	}
	for _, l := range layers {
		in.Layers = append(in.Layers, l.desc)
		in.DiffIDs = append(in.DiffIDs, l.diffID)
	}
	return MakeManifest(in)
}

// push sends base blobs (mounted from the base's repository when it is on
// the same registry), configs, then checks that every blob is there before
// any manifest goes up by digest and, last, the tags.
func push(ctx context.Context, pusher *remote.Pusher, check *registryCheck, repo name.Repository, opt Options, manifests []Manifest, index *Blob, bases []*base, tags []name.Tag) error {
	// HEADs up to checkJobs at once, copies and uploads up to opt.Workers.
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(max(opt.Workers, checkJobs))
	slots := make(chan struct{}, opt.Workers)
	upload := func(l v1.Layer) error {
		select {
		case slots <- struct{}{}:
		case <-ectx.Done():
			return ectx.Err()
		}
		defer func() { <-slots }()
		return pusher.Upload(ectx, repo, l)
	}
	seen := map[digest.Digest]bool{}
	for i, m := range manifests {
		if b := bases[i]; b != nil {
			for j, d := range b.layers {
				if seen[d.Digest] || b.exported[j].Digest != d.Digest {
					continue // converted blobs went up with the allotments
				}
				seen[d.Digest] = true
				eg.Go(func() error {
					if check.hasBlob(ectx, d) {
						fmt.Fprintf(opt.Log, "[2dfs base] %s in %s\n", d.Digest, repo)
						return nil
					}
					l, err := b.image.LayerByDigest(v1.Hash{Algorithm: d.Digest.Algorithm().String(), Hex: d.Digest.Encoded()})
					if err != nil {
						return err
					}
					// remote.Image's layers ask for a mount from the base's
					// repository wherever they go; across registries that
					// names a repository of the target that is not the
					// base's, so the layer is copied plainly instead.
					if ml, ok := l.(*remote.MountableLayer); ok {
						l = ml.Layer
					}
					up, how := l, "copied from"
					if b.ref.Context().RegistryStr() == repo.RegistryStr() {
						up, how = &remote.MountableLayer{Layer: l, Reference: b.ref}, "mounted from"
					}
					if err := upload(up); err != nil {
						return fmt.Errorf("base layer %s from %s: %w", d.Digest, b.ref, err)
					}
					// The pusher skips a blob the target already has.
					fmt.Fprintf(opt.Log, "[2dfs base] %s %s %s (unless %s had it)\n", d.Digest, how, b.ref, repo)
					return nil
				})
			}
		}
		cfg := m.Config
		if !seen[cfg.Descriptor.Digest] {
			seen[cfg.Descriptor.Digest] = true
			eg.Go(func() error {
				if check.hasBlob(ectx, cfg.Descriptor) {
					return nil
				}
				return upload(staticBlob{cfg})
			})
		}
	}
	if err := eg.Wait(); err != nil {
		return err
	}

	// Verify: every blob any manifest names is in the repository.
	var want []ocispec.Descriptor
	for _, m := range manifests {
		want = append(want, m.Config.Descriptor)
		want = append(want, m.Layers...)
	}
	if err := check.verify(ctx, want); err != nil {
		return err
	}

	// A manifest or tag the repository already has, byte for byte (its
	// digest), is not put again: a no-op re-run writes nothing. The HEADs
	// go out together.
	top := manifests[0].Manifest
	if index != nil {
		top = *index
	}
	var puts []manifestPut
	for _, m := range manifests {
		puts = append(puts, manifestPut{repo.Digest(m.Manifest.Descriptor.Digest.String()), m.Manifest, false})
	}
	if index != nil {
		puts = append(puts, manifestPut{repo.Digest(top.Descriptor.Digest.String()), top, false})
	}
	for _, t := range tags {
		puts = append(puts, manifestPut{t, top, true})
	}
	there := make([]bool, len(puts))
	var wg sync.WaitGroup
	for i, p := range puts {
		wg.Go(func() { there[i] = check.manifestIs(ctx, p.ref.Identifier(), p.blob.Descriptor.Digest) })
	}
	wg.Wait()
	// Manifests by digest first, the index after them, the tags last, in
	// turn: a tag never names a manifest the registry lacks.
	for i, p := range puts {
		if !there[i] {
			if err := pusher.Put(ctx, p.ref, rawManifest{p.blob}); err != nil {
				what := "push manifest"
				switch {
				case p.tag:
					return fmt.Errorf("tag %s: %w", p.ref, err)
				case index != nil && p.blob.Descriptor.Digest == top.Descriptor.Digest:
					what = "push index"
				}
				return fmt.Errorf("%s %s: %w", what, p.blob.Descriptor.Digest, err)
			}
		}
		if p.tag {
			how := "pushed"
			if there[i] {
				how = "already pushed"
			}
			fmt.Fprintf(opt.Log, "[2dfs] %s %s@%s\n", how, p.ref, top.Descriptor.Digest)
		}
	}
	return nil
}

// manifestPut is a manifest, index or tag push goes to put.
type manifestPut struct {
	ref  name.Reference
	blob Blob
	tag  bool
}

// streamLayer is an allotment layer for go-containerregistry's pusher that
// is written while it is uploaded, like its stream.Layer (gzip only): its
// digest is unknown (stream.ErrNotComputed) until the bytes went through,
// so the pusher streams it and commits it by the digest found at the end.
// From the stat cache its digest is known: the pusher then checks the
// registry first and reads nothing when the blob is there.
type streamLayer struct {
	ctx context.Context
	// write makes the blob in one pass.
	write     func(ctx context.Context, w io.Writer) (layer.Written, error)
	mediaType string
	want      *cachedLayer

	mu   sync.Mutex
	done *layer.Written
}

func (l *streamLayer) written() *layer.Written {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done
}

func toHash(d digest.Digest) v1.Hash {
	return v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()}
}

func (l *streamLayer) Digest() (v1.Hash, error) {
	if w := l.written(); w != nil {
		return toHash(w.Digest), nil
	}
	if l.want != nil {
		return toHash(l.want.Digest), nil
	}
	return v1.Hash{}, stream.ErrNotComputed
}

func (l *streamLayer) DiffID() (v1.Hash, error) {
	if w := l.written(); w != nil {
		return toHash(w.DiffID), nil
	}
	if l.want != nil {
		return toHash(l.want.DiffID), nil
	}
	return v1.Hash{}, stream.ErrNotComputed
}

func (l *streamLayer) Size() (int64, error) {
	if w := l.written(); w != nil {
		return w.Size, nil
	}
	if l.want != nil {
		return l.want.Size, nil
	}
	return 0, stream.ErrNotComputed
}

func (l *streamLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.mediaType), nil
}

func (l *streamLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("an allotment layer is only read compressed")
}

// Compressed starts one pass; the digests are set before the reader sees
// the end of the stream, so the pusher commits the right digest.
func (l *streamLayer) Compressed() (io.ReadCloser, error) {
	return &layerBody{l: l}, nil
}

// pass writes the blob to w once and records its digests.
func (l *streamLayer) pass(w io.Writer) error {
	got, err := l.write(l.ctx, w)
	if err == nil && l.want != nil && got.Digest != l.want.Digest {
		err = fmt.Errorf("layer digest %s differs from the stat cache's %s although its inputs did not change", got.Digest, l.want.Digest)
	}
	if err == nil {
		l.mu.Lock()
		l.done = &got
		l.mu.Unlock()
	}
	return err
}

// uploadTransport is go-containerregistry's default transport with a
// write buffer that holds a whole chunk of a streamed upload (a zstd or
// gzip block is at most 128 KiB, plus the chunk's framing): net/http
// flushes after every chunk, and with its 4 KiB default a chunk costs three
// writes to the socket (the buffer's first 4 KiB, the rest, the CRLF)
// instead of one.
func uploadTransport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.WriteBufferSize = 256 << 10
	return t
}

// layerBody is an upload's body. net/http copies a request body with
// io.CopyBuffer, which hands the connection's writer to WriteTo: the pass
// then writes each compressed block straight into the request as one
// chunk, with no pipe between two goroutines (a 32 KiB copy and three
// small writes per chunk through it). Read, for any other reader, runs the
// same pass through a pipe.
type layerBody struct {
	l  *streamLayer
	mu sync.Mutex
	pr *io.PipeReader
}

func (b *layerBody) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	pr := b.pr
	if pr == nil {
		// Nothing read yet: no pipe will be started after this.
		b.pr = closedPipe
	}
	b.mu.Unlock()
	if pr != nil {
		return io.Copy(w, readerOnly{pr})
	}
	cw := &countingWriter{w: w}
	err := b.l.pass(cw)
	return cw.n, err
}

func (b *layerBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.pr == nil {
		pr, pw := io.Pipe()
		b.pr = pr
		go func() { pw.CloseWithError(b.l.pass(pw)) }()
	}
	pr := b.pr
	b.mu.Unlock()
	return pr.Read(p)
}

func (b *layerBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pr != nil {
		return b.pr.Close()
	}
	b.pr = closedPipe
	return nil
}

// closedPipe marks a body that was written with WriteTo or closed unread.
var closedPipe = func() *io.PipeReader {
	pr, _ := io.Pipe()
	pr.CloseWithError(errors.New("the layer body was already written or closed"))
	return pr
}()

// readerOnly hides WriteTo from io.Copy.
type readerOnly struct{ io.Reader }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// staticBlob is a config as a layer the pusher uploads after a HEAD.
type staticBlob struct{ b Blob }

func (s staticBlob) Digest() (v1.Hash, error) { return toHash(s.b.Descriptor.Digest), nil }
func (s staticBlob) DiffID() (v1.Hash, error) { return toHash(s.b.Descriptor.Digest), nil }
func (s staticBlob) Size() (int64, error)     { return s.b.Descriptor.Size, nil }
func (s staticBlob) MediaType() (types.MediaType, error) {
	return types.MediaType(s.b.Descriptor.MediaType), nil
}
func (s staticBlob) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.b.Data)), nil
}
func (s staticBlob) Uncompressed() (io.ReadCloser, error) { return s.Compressed() }

// rawManifest is a manifest or index the pusher puts as it is.
type rawManifest struct{ b Blob }

func (r rawManifest) RawManifest() ([]byte, error) { return slices.Clone(r.b.Data), nil }
func (r rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(r.b.Descriptor.MediaType), nil
}
