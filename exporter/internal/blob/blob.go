// Package blob holds what the image sources share about reading blobs.
package blob

import (
	"context"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// Opener opens a blob by digest.
type Opener interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// Read opens a blob with o and reads it whole, at most limit bytes, checked
// against its digest: the Blob method of every image source.
func Read(ctx context.Context, o Opener, d digest.Digest, limit int64) ([]byte, error) {
	rc, err := o.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return ReadChecked(rc, d, limit)
}

// ReadChecked reads at most limit bytes and checks them against d.
func ReadChecked(r io.Reader, d digest.Digest, limit int64) ([]byte, error) {
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
