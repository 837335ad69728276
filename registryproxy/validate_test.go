package registryproxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/exporter/partition"
	"github.com/tdfs-kit/tdfs/exporter/partition/partitiontest"
)

// TestUpstreamDescriptorsValidated: a manifest whose descriptors carry a
// negative size, a size over the caps, a malformed digest or an unknown
// algorithm is refused with a 502 naming the manifest and the descriptor,
// and nothing is stored.
func TestUpstreamDescriptorsValidated(t *testing.T) {
	img := partitiontest.New(ocispec.MediaTypeImageManifest, 1, grid...)
	for _, c := range []struct {
		name string
		edit func(*ocispec.Manifest)
		want string
	}{
		{"negative layer size", func(m *ocispec.Manifest) { m.Layers[1].Size = -4611686018427387904 }, "layer 1: "},
		{"layer over 2^53", func(m *ocispec.Manifest) { m.Layers[0].Size = 1<<53 + 1 }, "layer 0: "},
		{"config over the cap", func(m *ocispec.Manifest) { m.Config.Size = partition.MaxConfigBytes + 1 }, "config: "},
		{"malformed digest", func(m *ocispec.Manifest) { m.Layers[2].Digest = "sha256:xyz" }, "layer 2: digest"},
		{"unknown algorithm", func(m *ocispec.Manifest) {
			m.Layers[0].Digest = digest.Digest("md5:" + strings.Repeat("0", 32))
		}, "layer 0: digest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, tamper("/manifests/v1", func(h http.Header, body []byte) []byte {
				var m ocispec.Manifest
				if err := json.Unmarshal(body, &m); err != nil {
					t.Fatal(err)
				}
				c.edit(&m)
				out, _ := json.Marshal(m)
				h.Set("Docker-Content-Digest", digest.FromBytes(out).String())
				return out
			}))
			push(t, e.registry.URL, "app", "v1", img)
			r := do(t, http.MethodGet, e.proxy.URL+"/v2/app/manifests/v1--0.0.2.2", nil)
			if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.ociError(), "manifest app:v1") || !strings.Contains(r.ociError(), c.want) {
				t.Errorf("%s %s, want 502 naming manifest app:v1 and %q", r.Status, r.ociError(), c.want)
			}
			if e.mem.Len() != 0 {
				t.Errorf("%d objects stored", e.mem.Len())
			}
		})
	}
}

// TestValidateIndexDescriptors: an index's platform descriptors are held
// to the manifest cap and named by position.
func TestValidateIndexDescriptors(t *testing.T) {
	good := digest.FromString("m").String()
	for body, want := range map[string]string{
		`{"manifests":[{"digest":"` + good + `","size":10},{"digest":"` + good + `","size":-1}]}`: "manifest 1: " + good + " has a negative size",
		`{"manifests":[{"digest":"` + good + `","size":5000000}]}`:                                "manifest 0: " + good + " is 5000000 bytes, over the limit",
		`{"manifests":[{"digest":"sha1:` + strings.Repeat("0", 40) + `","size":1}]}`:              "manifest 0: digest",
		`{"subject":{"digest":"","size":1}}`:                                                      "subject: digest",
		`{"layers":{}}`:                                                                           "manifest app:v1: json",
	} {
		err := validateDescriptors([]byte(body), manifestName("app", "v1"), partition.DefaultLimits)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
	if err := validateDescriptors([]byte(`{"manifests":[{"digest":"`+good+`","size":10}]}`), "x", partition.DefaultLimits); err != nil {
		t.Errorf("good index: %v", err)
	}
}
