package layout

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationContainerdName is the index.json annotation with the full name
// that containerd (ctr images import) and Docker use to name the image.
const AnnotationContainerdName = "io.containerd.image.name"

// Opener streams blobs, for Writer.Copy.
type Opener interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
	// String names the source for messages.
	String() string
}

// Written reports whether the blob d is already written.
func (w *Writer) Written(d digest.Digest) bool { return w.written[d] }

// Writer writes an OCI image layout, to a directory or as a tar.
// Blobs are written once each; index.json is written by Finish.
type Writer struct {
	dir     string      // when writing a directory
	tw      *tar.Writer // when writing a tar
	written map[digest.Digest]bool
}

func NewDir(dir string) (*Writer, error) {
	if err := os.MkdirAll(filepath.Join(dir, ocispec.ImageBlobsDir, "sha256"), 0o755); err != nil {
		return nil, err
	}
	return &Writer{dir: dir, written: map[digest.Digest]bool{}}, nil
}

func NewTar(w io.Writer) (*Writer, error) {
	lw := &Writer{tw: tar.NewWriter(w), written: map[digest.Digest]bool{}}
	if err := lw.file(ocispec.ImageLayoutFile, layoutFile()); err != nil {
		return nil, err
	}
	return lw, nil
}

func layoutFile() []byte {
	b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	return b
}

func (w *Writer) file(path string, data []byte) error {
	return w.stream(path, int64(len(data)), bytes.NewReader(data))
}

func (w *Writer) stream(path string, size int64, r io.Reader) error {
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

func (w *Writer) blobPath(d digest.Digest) string {
	return filepath.ToSlash(filepath.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
}

// Bytes writes a blob held in memory.
func (w *Writer) Bytes(d digest.Digest, data []byte) error {
	if w.written[d] {
		return nil
	}
	w.written[d] = true
	return w.file(w.blobPath(d), data)
}

// Copy streams a blob from src, checking its digest as it goes.
func (w *Writer) Copy(ctx context.Context, src Opener, desc ocispec.Descriptor) error {
	if w.written[desc.Digest] {
		return nil
	}
	if w.dir != "" {
		if fi, err := os.Stat(filepath.Join(w.dir, w.blobPath(desc.Digest))); err == nil && fi.Size() == desc.Size {
			w.written[desc.Digest] = true
			return nil
		}
	}
	rc, err := src.Open(ctx, desc.Digest)
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

// Finish writes index.json with root, named name (a full reference, for
// containerd and Docker) and tag (the OCI ref.name). A directory's existing
// entries stay, except one with the same tag.
func (w *Writer) Finish(root ocispec.Descriptor, fullName, tag string) error {
	root.Annotations = map[string]string{}
	if fullName != "" {
		root.Annotations[AnnotationContainerdName] = fullName
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
