package main

// Image access shared by export, inspect and partition: reading manifests and
// blobs from a registry or an OCI layout, and writing OCI layouts (as a
// directory or a tar). The pure work (conversion, partitioning) is in
// exporter/partition and exporter/tdfs; this file only moves bytes.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/pflag"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/tdfs"
)

// layoutScheme prefixes an OCI layout directory where a reference is
// expected: oci-layout://PATH or oci-layout://PATH:TAG.
const layoutScheme = "oci-layout://"

// Annotations of index.json entries: the OCI tag, and the full name that
// containerd (ctr images import) and Docker use to name the image.
const (
	annotationContainerdName = "io.containerd.image.name"
)

// registryFlags are the registry options every command takes.
type registryFlags struct {
	insecure bool
}

func (f *registryFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP and unverified TLS for the registry (local registries)")
}

func (f *registryFlags) nameOptions() []name.Option {
	if f.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (f *registryFlags) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if f.insecure {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
		opts = append(opts, remote.WithTransport(t))
	}
	return opts
}

// store reads an image's manifests and blobs.
type store interface {
	// root returns the manifest or index the reference names.
	root(ctx context.Context) (data []byte, mediaType string, err error)
	manifest(ctx context.Context, d digest.Digest) ([]byte, error)
	// blob reads a whole blob of at most limit bytes, checked against d.
	blob(ctx context.Context, d digest.Digest, limit int64) ([]byte, error)
	// open streams a blob; reading it to the end checks its digest.
	open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
	// size reports a blob's size, or an error naming it as missing.
	size(ctx context.Context, d digest.Digest) (int64, error)
	// String names the image for messages.
	String() string
}

// openStore opens ref: a registry reference or oci-layout://PATH[:TAG].
func openStore(ctx context.Context, ref string, f *registryFlags) (store, error) {
	if path, tag, ok := parseLayoutRef(ref); ok {
		return &layoutStore{dir: path, tag: tag}, nil
	}
	r, err := name.ParseReference(ref, f.nameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: %w", ref, err)
	}
	return &registryStore{ref: r, opts: f.remoteOptions(ctx)}, nil
}

// parseLayoutRef splits oci-layout://PATH[:TAG]. The tag is after the last
// colon of the last path element, so paths may contain colons elsewhere.
func parseLayoutRef(ref string) (path, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, layoutScheme)
	if !ok {
		return "", "", false
	}
	slash := strings.LastIndex(rest, "/")
	if i := strings.LastIndex(rest, ":"); i > slash && i > 0 {
		return rest[:i], rest[i+1:], true
	}
	return rest, "", true
}

type registryStore struct {
	ref  name.Reference
	opts []remote.Option
}

func (s *registryStore) String() string { return s.ref.Name() }

func (s *registryStore) root(ctx context.Context) ([]byte, string, error) {
	d, err := remote.Get(s.ref, s.opts...)
	if err != nil {
		return nil, "", fmt.Errorf("get %s: %w", s.ref.Name(), err)
	}
	return d.Manifest, string(d.MediaType), nil
}

func (s *registryStore) manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	desc, err := remote.Get(s.ref.Context().Digest(d.String()), s.opts...)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s from %s: %w", d, s.ref.Context().Name(), err)
	}
	if digest.FromBytes(desc.Manifest) != d {
		return nil, fmt.Errorf("manifest %s from %s does not match its digest", d, s.ref.Context().Name())
	}
	return desc.Manifest, nil
}

func (s *registryStore) open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	l, err := remote.Layer(s.ref.Context().Digest(d.String()), s.opts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, s.missing(d, err)
	}
	return rc, nil
}

func (s *registryStore) blob(ctx context.Context, d digest.Digest, limit int64) ([]byte, error) {
	rc, err := s.open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readChecked(rc, d, limit)
}

func (s *registryStore) size(ctx context.Context, d digest.Digest) (int64, error) {
	l, err := remote.Layer(s.ref.Context().Digest(d.String()), s.opts...)
	if err != nil {
		return 0, err
	}
	n, err := l.Size()
	if err != nil {
		return 0, s.missing(d, err)
	}
	return n, nil
}

// missing turns a registry's 404 into a message that names the blob.
func (s *registryStore) missing(d digest.Digest, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("blob %s is missing from %s", d, s.ref.Context().Name())
	}
	return fmt.Errorf("blob %s in %s: %w", d, s.ref.Context().Name(), err)
}

// readChecked reads at most limit bytes and checks them against d.
func readChecked(r io.Reader, d digest.Digest, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is over the %d byte limit", d, limit)
	}
	if !d.Algorithm().Available() || d.Algorithm().FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s does not match its digest", d)
	}
	return b, nil
}

// layoutStore reads an OCI layout directory.
type layoutStore struct {
	dir, tag string
}

func (s *layoutStore) String() string {
	if s.tag == "" {
		return layoutScheme + s.dir
	}
	return layoutScheme + s.dir + ":" + s.tag
}

func (s *layoutStore) root(ctx context.Context) ([]byte, string, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, ocispec.ImageIndexFile))
	if err != nil {
		return nil, "", fmt.Errorf("%s is not an OCI layout: %w", s.dir, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, "", fmt.Errorf("%s: index.json: %w", s.dir, err)
	}
	var found []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if s.tag == "" || d.Annotations[ocispec.AnnotationRefName] == s.tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, "", fmt.Errorf("%s has no image tagged %q", s.dir, s.tag)
	case len(found) > 1:
		return nil, "", fmt.Errorf("%s has %d images; name one as %s:TAG", s.dir, len(found), s)
	}
	b, err := s.blob(ctx, found[0].Digest, partition.MaxManifestBytes)
	if err != nil {
		return nil, "", err
	}
	return b, found[0].MediaType, nil
}

func (s *layoutStore) path(d digest.Digest) string {
	return filepath.Join(s.dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

func (s *layoutStore) manifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	return s.blob(ctx, d, partition.MaxManifestBytes)
}

func (s *layoutStore) open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s is missing from %s", d, s.dir)
	}
	return f, err
}

func (s *layoutStore) blob(ctx context.Context, d digest.Digest, limit int64) ([]byte, error) {
	rc, err := s.open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readChecked(rc, d, limit)
}

func (s *layoutStore) size(ctx context.Context, d digest.Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(s.path(d))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("blob %s is missing from %s", d, s.dir)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// rawManifest lets remote.Put push manifest bytes as they are.
type rawManifest struct {
	data      []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }

// layoutWriter writes an OCI image layout, to a directory or as a tar.
// Blobs are written once each; index.json is written by finish.
type layoutWriter struct {
	dir     string      // when writing a directory
	tw      *tar.Writer // when writing a tar
	written map[digest.Digest]bool
}

func newLayoutDir(dir string) (*layoutWriter, error) {
	if err := os.MkdirAll(filepath.Join(dir, ocispec.ImageBlobsDir, "sha256"), 0o755); err != nil {
		return nil, err
	}
	return &layoutWriter{dir: dir, written: map[digest.Digest]bool{}}, nil
}

func newLayoutTar(w io.Writer) (*layoutWriter, error) {
	lw := &layoutWriter{tw: tar.NewWriter(w), written: map[digest.Digest]bool{}}
	if err := lw.file(ocispec.ImageLayoutFile, layoutFile()); err != nil {
		return nil, err
	}
	return lw, nil
}

func layoutFile() []byte {
	b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	return b
}

func (w *layoutWriter) file(path string, data []byte) error {
	return w.stream(path, int64(len(data)), bytes.NewReader(data))
}

func (w *layoutWriter) stream(path string, size int64, r io.Reader) error {
	if w.tw != nil {
		hdr := &tar.Header{Name: path, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}
		if err := w.tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(w.tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes, expected %d", path, n, size)
		}
		return err
	}
	full := filepath.Join(w.dir, path)
	tmp, err := os.CreateTemp(filepath.Dir(full), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("%s: wrote %d bytes, expected %d", path, n, size)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), full)
}

func (w *layoutWriter) blobPath(d digest.Digest) string {
	return filepath.ToSlash(filepath.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
}

// bytes writes a blob held in memory.
func (w *layoutWriter) bytes(d digest.Digest, data []byte) error {
	if w.written[d] {
		return nil
	}
	w.written[d] = true
	return w.file(w.blobPath(d), data)
}

// copy streams a blob from src, checking its digest as it goes.
func (w *layoutWriter) copy(ctx context.Context, src store, desc ocispec.Descriptor) error {
	if w.written[desc.Digest] {
		return nil
	}
	if w.dir != "" {
		if fi, err := os.Stat(filepath.Join(w.dir, w.blobPath(desc.Digest))); err == nil && fi.Size() == desc.Size {
			w.written[desc.Digest] = true
			return nil
		}
	}
	rc, err := src.open(ctx, desc.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	verifier := desc.Digest.Verifier()
	if err := w.stream(w.blobPath(desc.Digest), desc.Size, io.TeeReader(rc, verifier)); err != nil {
		return fmt.Errorf("copy blob %s: %w", desc.Digest, err)
	}
	if !verifier.Verified() {
		return fmt.Errorf("blob %s from %s does not match its digest", desc.Digest, src)
	}
	w.written[desc.Digest] = true
	return nil
}

// finish writes index.json with root, named name (a full reference, for
// containerd and Docker) and tag (the OCI ref.name). A directory's existing
// entries stay, except one with the same tag.
func (w *layoutWriter) finish(root ocispec.Descriptor, fullName, tag string) error {
	root.Annotations = map[string]string{}
	if fullName != "" {
		root.Annotations[annotationContainerdName] = fullName
	}
	if tag != "" {
		root.Annotations[ocispec.AnnotationRefName] = tag
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	if w.dir != "" {
		if data, err := os.ReadFile(filepath.Join(w.dir, ocispec.ImageIndexFile)); err == nil {
			if err := json.Unmarshal(data, &idx); err != nil {
				return fmt.Errorf("%s: existing index.json: %w", w.dir, err)
			}
		}
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if tag == "" || d.Annotations[ocispec.AnnotationRefName] != tag {
				kept = append(kept, d)
			}
		}
		idx.Manifests = kept
		if err := w.file(ocispec.ImageLayoutFile, layoutFile()); err != nil {
			return err
		}
	}
	idx.Manifests = append(idx.Manifests, root)
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := w.file(ocispec.ImageIndexFile, data); err != nil {
		return err
	}
	if w.tw != nil {
		return w.tw.Close()
	}
	return nil
}

// isAttestation reports whether an index entry is a BuildKit attestation.
func isAttestation(d ocispec.Descriptor) bool {
	return d.Annotations[partition.AnnotationReferenceType] == partition.ReferenceTypeAttestation
}

// configOf returns the config descriptor of an image manifest.
func configOf(manifest []byte) (ocispec.Descriptor, error) {
	return partition.ConfigOf(manifest)
}

// fieldOf fetches and parses the field blob of a reference manifest.
func fieldOf(ctx context.Context, src store, m *tdfs.Manifest) ([]byte, *tdfs.Field, error) {
	blob, err := src.blob(ctx, m.Field.Digest, tdfs.MaxFieldBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("field blob: %w", err)
	}
	f, err := m.ReadField(blob)
	if err != nil {
		return nil, nil, err
	}
	return blob, f, nil
}
