package direct

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeLayout writes an OCI image layout as a tar, like BuildKit's oci
// exporter with its default tar=true: oci-layout, index.json naming the
// image, and every blob once. Base layers are copied from the base's
// registry. The tar goes to a temporary file renamed over dest at the end,
// so an interrupted build leaves no partial layout.
func writeLayout(ctx context.Context, dest string, manifests []Manifest, index *Blob, layers []allotmentLayer, converted map[digest.Digest]*allotmentLayer, bases []*base, tags []name.Tag) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".2dfs-oci-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	written := map[digest.Digest]bool{}
	add := func(d digest.Digest, size int64, r io.Reader) error {
		if written[d] {
			return nil
		}
		written[d] = true
		h := &tar.Header{Name: "blobs/" + d.Algorithm().String() + "/" + d.Encoded(), Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		vr := d.Verifier()
		n, err := io.Copy(io.MultiWriter(tw, vr), r)
		if err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
		if n != size || !vr.Verified() {
			return fmt.Errorf("blob %s: the bytes written do not match its digest and size", d)
		}
		return nil
	}
	addBytes := func(b Blob) error { return add(b.Descriptor.Digest, b.Descriptor.Size, bytes.NewReader(b.Data)) }

	files := append([]allotmentLayer(nil), layers...)
	for _, c := range converted {
		files = append(files, *c)
	}
	for _, l := range files {
		f, err := os.Open(l.file)
		if err != nil {
			return err
		}
		err = add(l.desc.Digest, l.desc.Size, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	for i, m := range manifests {
		if b := bases[i]; b != nil {
			for j, d := range b.layers {
				if written[d.Digest] || b.exported[j].Digest != d.Digest {
					continue
				}
				l, err := b.image.LayerByDigest(v1.Hash{Algorithm: d.Digest.Algorithm().String(), Hex: d.Digest.Encoded()})
				if err != nil {
					return err
				}
				rc, err := l.Compressed()
				if err != nil {
					return fmt.Errorf("base layer %s from %s: %w", d.Digest, b.ref, err)
				}
				err = add(d.Digest, d.Size, rc)
				rc.Close()
				if err != nil {
					return fmt.Errorf("base layer %s from %s: %w", d.Digest, b.ref, err)
				}
			}
		}
		if err := addBytes(m.Config); err != nil {
			return err
		}
		if err := addBytes(m.Manifest); err != nil {
			return err
		}
	}
	top := manifests[0].Manifest
	if index != nil {
		if err := addBytes(*index); err != nil {
			return err
		}
		top = *index
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	desc := top.Descriptor
	if len(tags) > 0 {
		desc.Annotations = map[string]string{
			"io.containerd.image.name": tags[0].Name(),
			ocispec.AnnotationRefName:  tags[0].TagStr(),
		}
	}
	idx, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"` + ocispec.ImageLayoutVersion + `"}`)}, {"index.json", idx}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
