package main

// Image access shared by export, inspect and partition: the registry flags,
// and opening a reference as an image source (exporter/remote or
// exporter/layout). The work itself is in exporter/image.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/spf13/pflag"

	"github.com/tdfs-kit/tdfs/exporter/image"
	"github.com/tdfs-kit/tdfs/exporter/layout"
	exremote "github.com/tdfs-kit/tdfs/exporter/remote"
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

// store is an image source the commands also copy whole blobs from.
type store interface {
	image.Source
	layout.Opener
}

// openStore opens ref: a registry reference or oci-layout://PATH[:TAG].
func openStore(ctx context.Context, ref string, f *registryFlags) (store, error) {
	if path, tag, ok := layout.ParseRef(ref); ok {
		return layout.New(path, tag), nil
	}
	r, err := name.ParseReference(ref, f.nameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: %w", ref, err)
	}
	return exremote.New(r, f.remoteOptions(ctx)...), nil
}

// rawManifest lets remote.Put push manifest bytes as they are.
type rawManifest struct {
	data      []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }
