package layer

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is a layer compression as the image exporter's compression
// and compression-level options name it.
type Compression struct {
	// Name is "zstd", "gzip" or "uncompressed".
	Name string
	// Level is the compressor's level; nil for its default.
	Level *int
}

// ParseCompression reads "zstd", "gzip" or "uncompressed" and a level (< 0
// for the compressor's default), as `2dfs build --compression` takes them.
func ParseCompression(name string, level int) (Compression, error) {
	switch name {
	case "zstd", "gzip", "uncompressed":
	default:
		return Compression{}, fmt.Errorf("compression %q: the direct engine writes zstd, gzip or uncompressed layers", name)
	}
	c := Compression{Name: name}
	if level >= 0 && name != "uncompressed" {
		c.Level = &level
	}
	return c, nil
}

// MediaType is the OCI media type of layers with this compression.
func (c Compression) MediaType() string {
	switch c.Name {
	case "zstd":
		return ocispec.MediaTypeImageLayerZstd
	case "gzip":
		return ocispec.MediaTypeImageLayerGzip
	}
	return ocispec.MediaTypeImageLayer
}

// compressor opens the compressed stream exactly as BuildKit's exporter does
// (util/compression/zstd.go and gzip.go at the BuildKit in go.mod): the
// klauspost zstd encoder with default options but the level mapped by
// EncoderLevelFromZstd, or compress/gzip at the level. Its output does not
// depend on how writes are split, only on the bytes, the library version
// and these options; go.mod pins klauspost/compress to the version the
// pinned buildkitd is built with.
func (c Compression) compressor(w io.Writer) (io.WriteCloser, error) {
	switch c.Name {
	case "zstd":
		var opts []zstd.EOption
		if c.Level != nil {
			opts = append(opts, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(*c.Level)))
		}
		return zstd.NewWriter(w, opts...)
	case "gzip":
		level := gzip.DefaultCompression
		if c.Level != nil {
			level = *c.Level
		}
		return gzip.NewWriterLevel(w, level)
	case "uncompressed":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c.Name)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Written describes a layer after its pass.
type Written struct {
	// Digest and Size are those of the compressed blob.
	Digest digest.Digest
	Size   int64
	// DiffID is the digest of the uncompressed tar.
	DiffID digest.Digest
}

// Write streams the tar of t, compressed, to w and returns the digests of
// both streams. Each regular file is read once; one whose size or mtime is
// not what the scan saw, before or after the read, fails the write naming
// the file, so a file edited during a build never yields a layer that mixes
// two versions.
func Write(ctx context.Context, w io.Writer, t *Tree, epoch time.Time, c Compression) (Written, error) {
	blob := digest.SHA256.Digester()
	counted := &counter{}
	zw, err := c.compressor(io.MultiWriter(w, blob.Hash(), counted))
	if err != nil {
		return Written{}, err
	}
	diff := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(zw, diff.Hash()))
	hdrs, entries := t.Headers(epoch)
	for i, h := range hdrs {
		if err := ctx.Err(); err != nil {
			zw.Close()
			return Written{}, err
		}
		if err := tw.WriteHeader(h); err != nil {
			zw.Close()
			return Written{}, fmt.Errorf("write tar header of %s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if err := copyFile(tw, entries[i]); err != nil {
				zw.Close()
				return Written{}, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		zw.Close()
		return Written{}, err
	}
	if err := zw.Close(); err != nil {
		return Written{}, err
	}
	return Written{Digest: blob.Digest(), Size: counted.n, DiffID: diff.Digest()}, nil
}

// copyBufs are copyFile's read buffers: 256 KiB, so a large file is read
// in an eighth of the reads and tar and hash writes io.CopyN's 32 KiB
// would make, and each write fills two zstd blocks' worth of input.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyFile writes the bytes of a regular entry, checking the file against
// its scan before and after.
func copyFile(w io.Writer, e *Entry) error {
	f, err := os.Open(e.Source)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unchanged(f, e, "before"); err != nil {
		return err
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	n, err := io.CopyBuffer(w, io.LimitReader(f, e.Size), *buf)
	if err == nil && n < e.Size {
		err = io.EOF // as io.CopyN says it: the file is shorter now
	}
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("%s changed while it was read: %d bytes, not %d", e.Source, n, e.Size)
		}
		return fmt.Errorf("read %s: %w", e.Source, err)
	}
	return unchanged(f, e, "while")
}

func unchanged(f *os.File, e *Entry, when string) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != e.Size || !st.ModTime().Equal(e.SourceMtime) {
		return fmt.Errorf("%s changed %s it was read (size %d → %d, mtime %s → %s); build again once it is written",
			e.Source, when, e.Size, st.Size(), e.SourceMtime.Format(time.RFC3339Nano), st.ModTime().Format(time.RFC3339Nano))
	}
	return nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// Recompress writes the uncompressed layer read from r to w with c, as
// BuildKit's exporter converts a base layer whose compression is not the
// build's (util/converter: decompress, then the same compressor), and
// returns the digests of both streams.
func Recompress(ctx context.Context, w io.Writer, r io.Reader, c Compression) (Written, error) {
	blob := digest.SHA256.Digester()
	counted := &counter{}
	zw, err := c.compressor(io.MultiWriter(w, blob.Hash(), counted))
	if err != nil {
		return Written{}, err
	}
	diff := digest.SHA256.Digester()
	if _, err := io.Copy(zw, io.TeeReader(&ctxReader{ctx, r}, diff.Hash())); err != nil {
		zw.Close()
		return Written{}, err
	}
	if err := zw.Close(); err != nil {
		return Written{}, err
	}
	return Written{Digest: blob.Digest(), Size: counted.n, DiffID: diff.Digest()}, nil
}

// Compressed says whether a layer of media type mt is already in c's
// compression, so BuildKit keeps it as it is; false for a layer it
// converts. Types it does not convert (foreign layers) count as kept.
func (c Compression) Compressed(mt string) bool {
	var kind string
	switch mt {
	case ocispec.MediaTypeImageLayerZstd, "application/vnd.docker.image.rootfs.diff.tar.zstd":
		kind = "zstd"
	case ocispec.MediaTypeImageLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip":
		kind = "gzip"
	case ocispec.MediaTypeImageLayer, "application/vnd.docker.image.rootfs.diff.tar":
		kind = "uncompressed"
	default:
		return true
	}
	return kind == c.Name
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
