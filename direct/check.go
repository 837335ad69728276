package direct

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// checkJobs is how many HEAD requests a build has in flight at once: a
// no-op re-run is nothing but these round trips, one per blob, so they go
// out together, not one per write worker.
const checkJobs = 16

// registryCheck asks the target repository what it holds, over one
// authenticated client, and remembers the blobs it answered for in this
// build. A blob the registry said it has (with the right size) is neither
// uploaded nor asked about again before the manifests go up; a blob this
// build uploaded or mounted is asked about once, after.
type registryCheck struct {
	repo   name.Repository
	client *http.Client

	mu   sync.Mutex
	have map[digest.Digest]bool
}

func newRegistryCheck(ctx context.Context, repo name.Repository, kc authn.Keychain) (*registryCheck, error) {
	a, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, err
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, a, remote.DefaultTransport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", repo, err)
	}
	return &registryCheck{repo: repo, client: &http.Client{Transport: tr}, have: map[digest.Digest]bool{}}, nil
}

func (c *registryCheck) url(kind, ref string) string {
	u := url.URL{Scheme: c.repo.Scheme(), Host: c.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/%s/%s", c.repo.RepositoryStr(), kind, ref)}
	return u.String()
}

func (c *registryCheck) head(ctx context.Context, u string, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// blobStatus HEADs a blob: nil when the repository has it with d's size
// (and records it), else an error saying why not.
func (c *registryCheck) blobStatus(ctx context.Context, d ocispec.Descriptor) error {
	resp, err := c.head(ctx, c.url("blobs", d.Digest.String()), "")
	if err != nil {
		return fmt.Errorf("check blob %s in %s: %w", d.Digest, c.repo, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("blob %s is not in %s (HTTP %d)", d.Digest, c.repo, resp.StatusCode)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		return fmt.Errorf("blob %s in %s has %d bytes, want %d", d.Digest, c.repo, resp.ContentLength, d.Size)
	}
	c.mu.Lock()
	c.have[d.Digest] = true
	c.mu.Unlock()
	return nil
}

// hasBlob says whether the repository holds the blob; any doubt (an error,
// a refusal) is "no", which sends the blob through the pusher, whose
// errors are the ones reported.
func (c *registryCheck) hasBlob(ctx context.Context, d ocispec.Descriptor) bool {
	return c.blobStatus(ctx, d) == nil
}

func (c *registryCheck) known(d digest.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.have[d]
}

// verify asks about every blob not yet seen in the repository in this
// build and fails naming the first one it lacks or whose size differs.
func (c *registryCheck) verify(ctx context.Context, descs []ocispec.Descriptor) error {
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(checkJobs)
	done := map[digest.Digest]bool{}
	for _, d := range descs {
		if done[d.Digest] || c.known(d.Digest) {
			continue
		}
		done[d.Digest] = true
		eg.Go(func() error {
			if err := c.blobStatus(ectx, d); err != nil {
				return fmt.Errorf("%w after the upload; nothing was tagged", err)
			}
			return nil
		})
	}
	return eg.Wait()
}

// manifestAccept are the manifest types the direct engine writes: asked
// for all, a registry answers a tag with the digest of what it holds, not
// of a conversion.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// manifestIs says whether ref (a tag or a digest) names the manifest d in
// the repository: HEAD, then the digest the registry gives. Any doubt is
// "no", and the manifest is put.
func (c *registryCheck) manifestIs(ctx context.Context, ref string, d digest.Digest) bool {
	resp, err := c.head(ctx, c.url("manifests", ref), manifestAccept)
	return err == nil && resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Content-Digest") == d.String()
}
