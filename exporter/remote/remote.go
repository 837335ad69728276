// Package remote reads images from a registry with go-containerregistry: an
// image.Source over one repository, plus streaming of whole blobs for the
// commands that copy them.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/internal/blob"
)

// Source reads the repository of a reference.
type Source struct {
	ref  name.Reference
	opts []ggcr.Option
}

// New returns a Source for ref's repository whose default image is ref.
// opts are go-containerregistry's (auth, transport, context).
func New(ref name.Reference, opts ...ggcr.Option) *Source {
	return &Source{ref: ref, opts: opts}
}

// String names the image for messages.
func (s *Source) String() string { return s.ref.Name() }

// Manifest fetches the manifest or index ref names: a tag, a digest (the
// content is checked against it), or "" for the reference given to New.
func (s *Source) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	if ref == "" {
		d, err := ggcr.Get(s.ref, s.opts...)
		if err != nil {
			return nil, "", fmt.Errorf("get %s: %w", s.ref.Name(), err)
		}
		return d.Manifest, string(d.MediaType), nil
	}
	dg, err := digest.Parse(ref)
	if err != nil {
		d, err := ggcr.Get(s.ref.Context().Tag(ref), s.opts...)
		if err != nil {
			return nil, "", fmt.Errorf("get %s:%s: %w", s.ref.Context().Name(), ref, err)
		}
		return d.Manifest, string(d.MediaType), nil
	}
	d, err := ggcr.Get(s.ref.Context().Digest(ref), s.opts...)
	if err != nil {
		return nil, "", fmt.Errorf("get manifest %s from %s: %w", dg, s.ref.Context().Name(), err)
	}
	if digest.FromBytes(d.Manifest) != dg {
		return nil, "", fmt.Errorf("manifest %s from %s does not match its digest", dg, s.ref.Context().Name())
	}
	return d.Manifest, string(d.MediaType), nil
}

// Layer is a blob of the repository as a go-containerregistry layer, which
// remote.WriteLayer can mount into another repository of the same registry.
func (s *Source) Layer(d digest.Digest) (v1.Layer, error) {
	return ggcr.Layer(s.ref.Context().Digest(d.String()), s.opts...)
}

// Open streams a blob; reading it to the end checks its digest.
func (s *Source) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	l, err := s.Layer(d)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, s.missing(d, err)
	}
	return rc, nil
}

// Blob reads a whole blob of at most limit bytes, checked against its digest.
func (s *Source) Blob(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	return blob.Read(ctx, s, desc.Digest, limit)
}

// Size asks the registry for a blob's size.
func (s *Source) Size(ctx context.Context, d digest.Digest) (int64, error) {
	l, err := s.Layer(d)
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
func (s *Source) missing(d digest.Digest, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("blob %s is missing from %s", d, s.ref.Context().Name())
	}
	return fmt.Errorf("blob %s in %s: %w", d, s.ref.Context().Name(), err)
}
