package registryproxy

import (
	"encoding/json"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
)

// maxLayerSize is the largest layer size the proxy accepts from an
// upstream: 2^53, the largest integer a JSON number holds exactly in most
// clients (JavaScript, and any decoder going through float64).
const maxLayerSize = 1 << 53

// manifestName names a manifest for errors: "manifest app:v1" or
// "manifest app@sha256:…".
func manifestName(name, ref string) string {
	if strings.Contains(ref, ":") {
		return "manifest " + name + "@" + ref
	}
	return "manifest " + name + ":" + ref
}

// validateDescriptors refuses a manifest or index whose descriptors the
// proxy must not copy into a partition: a negative size, a size over the
// caps (manifests and configs: lim, the proxy's own fetch caps; layers: 2^53),
// a malformed digest or one of an algorithm go-digest does not know (it
// knows sha256, sha384 and sha512). what names the
// upstream object ("manifest app:v1") for the 502 the error becomes. It
// only reads the descriptors; the rewriter checks the rest.
func validateDescriptors(data []byte, what string, lim partition.Limits) error {
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
		Subject   *ocispec.Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return &badUpstreamError{fmt.Errorf("%s: %w", what, err)}
	}
	check := func(role string, d ocispec.Descriptor, max int64) error {
		var problem string
		switch err := d.Digest.Validate(); {
		case err != nil:
			problem = fmt.Sprintf("digest %q: %v", d.Digest, err)
		case d.Size < 0:
			problem = fmt.Sprintf("%s has a negative size %d", d.Digest, d.Size)
		case d.Size > max:
			problem = fmt.Sprintf("%s is %d bytes, over the limit of %d", d.Digest, d.Size, max)
		default:
			return nil
		}
		return &badUpstreamError{fmt.Errorf("%s: %s: %s", what, role, problem)}
	}
	if m.Config != nil {
		if err := check("config", *m.Config, lim.ConfigBytes); err != nil {
			return err
		}
	}
	for i, d := range m.Layers {
		if err := check(fmt.Sprintf("layer %d", i), d, maxLayerSize); err != nil {
			return err
		}
	}
	for i, d := range m.Manifests {
		if err := check(fmt.Sprintf("manifest %d", i), d, lim.ManifestBytes); err != nil {
			return err
		}
	}
	if m.Subject != nil {
		if err := check("subject", *m.Subject, lim.ManifestBytes); err != nil {
			return err
		}
	}
	return nil
}
