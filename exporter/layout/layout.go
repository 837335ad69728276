// Package layout reads and writes OCI image layouts (a directory, or a tar
// of one): Source is an image.Source over a directory, Writer writes one.
package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/internal/blob"
	"github.com/tdfs-kit/tdfs/exporter/partition"
)

// Scheme prefixes an OCI layout directory where a reference is expected:
// oci-layout://PATH or oci-layout://PATH:TAG.
const Scheme = "oci-layout://"

// ParseRef splits oci-layout://PATH[:TAG]. The tag is after the last colon
// of the last path element, so paths may contain colons elsewhere.
func ParseRef(ref string) (path, tag string, ok bool) {
	rest, ok := strings.CutPrefix(ref, Scheme)
	if !ok {
		return "", "", false
	}
	slash := strings.LastIndex(rest, "/")
	if i := strings.LastIndex(rest, ":"); i > slash && i > 0 {
		return rest[:i], rest[i+1:], true
	}
	return rest, "", true
}

// Source reads an OCI layout directory.
type Source struct {
	dir, tag string
}

// New returns a Source for the layout in dir whose default image is the one
// tagged tag (the only one, when tag is empty).
func New(dir, tag string) *Source { return &Source{dir: dir, tag: tag} }

// String names the image for messages, as oci-layout://PATH[:TAG].
func (s *Source) String() string {
	if s.tag == "" {
		return Scheme + s.dir
	}
	return Scheme + s.dir + ":" + s.tag
}

// Manifest reads the manifest or index ref names: a digest, a tag of
// index.json, or "" for the tag given to New.
func (s *Source) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	if d, err := digest.Parse(ref); err == nil {
		b, err := s.Blob(ctx, ocispec.Descriptor{Digest: d}, partition.MaxManifestBytes)
		if err != nil {
			return nil, "", err
		}
		return b, partition.MediaTypeOf(b, ""), nil
	}
	tag := ref
	if tag == "" {
		tag = s.tag
	}
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
		if tag == "" || d.Annotations[ocispec.AnnotationRefName] == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, "", fmt.Errorf("%s has no image tagged %q", s.dir, tag)
	case len(found) > 1:
		return nil, "", fmt.Errorf("%s has %d images; name one as %s:TAG", s.dir, len(found), s)
	}
	b, err := s.Blob(ctx, found[0], partition.MaxManifestBytes)
	if err != nil {
		return nil, "", err
	}
	return b, found[0].MediaType, nil
}

func (s *Source) path(d digest.Digest) string {
	return filepath.Join(s.dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// Open streams a blob.
func (s *Source) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s is missing from %s", d, s.dir)
	}
	return f, err
}

// Blob reads a whole blob of at most limit bytes, checked against its digest.
func (s *Source) Blob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	return blob.Read(ctx, s, desc.Digest, limit)
}

// Size stats a blob.
func (s *Source) Size(ctx context.Context, d digest.Digest) (int64, error) {
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
