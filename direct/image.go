package direct

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/field"
)

// Media types of Docker's image format, as containerd names them.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
	dockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	dockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	dockerForeign      = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	dockerForeignGzip  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

	// The OCI spec deprecates non-distributable layers; bases may still
	// have them, and BuildKit maps them, so the names are spelled out.
	ociForeign     = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	ociForeignGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)

// layerType converts a layer media type to the OCI or Docker family, as
// BuildKit's exporter does (util/compression ConvertAllLayerMediaTypes);
// types it does not know stay as they are, as there.
func layerType(mt string, oci bool) string {
	toOCI := map[string]string{
		dockerLayer:       ocispec.MediaTypeImageLayer,
		dockerLayerGzip:   ocispec.MediaTypeImageLayerGzip,
		dockerLayerZstd:   ocispec.MediaTypeImageLayerZstd,
		dockerForeign:     ociForeign,
		dockerForeignGzip: ociForeignGzip,
	}
	toDocker := map[string]string{
		ocispec.MediaTypeImageLayer:     dockerLayer,
		ocispec.MediaTypeImageLayerGzip: dockerLayerGzip,
		ocispec.MediaTypeImageLayerZstd: dockerLayerZstd,
		ociForeign:                      dockerForeign,
		ociForeignGzip:                  dockerForeignGzip,
	}
	m := toDocker
	if oci {
		m = toOCI
	}
	if c, ok := m[mt]; ok {
		return c
	}
	return mt
}

// Blob is a descriptor with its bytes, for configs, manifests and indexes.
type Blob struct {
	Descriptor ocispec.Descriptor
	Data       []byte
}

func blobOf(mediaType string, data []byte) Blob {
	return Blob{Descriptor: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
}

// Manifest is one platform's image: its config and manifest, and the layers
// the manifest lists (the base's, then the allotments').
type Manifest struct {
	Platform ocispec.Platform
	Config   Blob
	Manifest Blob
	Layers   []ocispec.Descriptor
}

// ImageInput is what one platform's image is made of.
type ImageInput struct {
	// Image is the config the frontend hands the exporter: llb.Convert's.
	Image *dockerspec.DockerOCIImage
	// Record is the field record the frontend embeds in that config.
	Record *field.Record
	// BaseImage is the base's config; nil for scratch.
	BaseImage *dockerspec.DockerOCIImage
	// BaseLayers are the base manifest's layers.
	BaseLayers []ocispec.Descriptor
	// Layers and DiffIDs are the allotments' layers, in row-major order.
	Layers  []ocispec.Descriptor
	DiffIDs []digest.Digest
	// Epoch is the build's epoch (SOURCE_DATE_EPOCH or the default).
	Epoch time.Time
	// Platform is the export platform, normalized.
	Platform ocispec.Platform
	// OCI says whether OCI media types are written (else Docker's).
	OCI bool
}

// MakeManifest writes the config and manifest BuildKit's image exporter
// writes for the frontend's result (the frontend's config: dockerui's
// json.Marshal, then Record.Embed; exporter/containerimage/writer.go:
// commitDistributionManifest and patchImageConfig): the config marshalled
// as dockerui marshals it, then rootfs and history replaced and the
// top-level keys re-marshalled in sorted order; the manifest indented by
// two spaces.
func MakeManifest(in ImageInput) (Manifest, error) {
	dt, err := json.Marshal(in.Image)
	if err != nil {
		return Manifest{}, fmt.Errorf("marshal image config: %w", err)
	}
	if in.Record != nil {
		if dt, err = in.Record.Embed(dt); err != nil {
			return Manifest{}, err
		}
	}
	var baseImg *dockerspec.DockerOCIImage
	if in.BaseImage != nil {
		// The exporter sees the base config after a JSON round trip.
		bdt, err := json.Marshal(in.BaseImage)
		if err != nil {
			return Manifest{}, err
		}
		baseImg = &dockerspec.DockerOCIImage{}
		if err := json.Unmarshal(bdt, baseImg); err != nil {
			return Manifest{}, err
		}
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	if len(in.BaseLayers) != len(in.Image.RootFS.DiffIDs) {
		return Manifest{}, fmt.Errorf("base has %d layers but its config %d diff_ids", len(in.BaseLayers), len(in.Image.RootFS.DiffIDs))
	}
	for i, l := range in.BaseLayers {
		d := ocispec.Descriptor{MediaType: layerType(l.MediaType, in.OCI), Digest: l.Digest, Size: l.Size}
		if in.OCI {
			d.Annotations = externalAnnotations(l.Annotations)
		}
		layers = append(layers, d)
		diffIDs = append(diffIDs, in.Image.RootFS.DiffIDs[i])
	}
	for i, l := range in.Layers {
		l.MediaType = layerType(l.MediaType, in.OCI)
		layers = append(layers, l)
		diffIDs = append(diffIDs, in.DiffIDs[i])
	}

	var hist struct{ History []ocispec.History }
	if err := json.Unmarshal(dt, &hist); err != nil {
		return Manifest{}, err
	}
	history := fillHistory(hist.History)
	config, err := patchConfig(dt, diffIDs, history, in.Epoch, baseImg)
	if err != nil {
		return Manifest{}, err
	}

	manifestType, configType := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	if !in.OCI {
		manifestType, configType = dockerManifest, dockerConfig
	}
	cfg := blobOf(configType, config)
	mfst := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifestType,
		Config:    cfg.Descriptor,
		Layers:    layers,
	}
	mdt, err := json.MarshalIndent(mfst, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	return Manifest{Platform: in.Platform, Config: cfg, Manifest: blobOf(manifestType, mdt), Layers: layers}, nil
}

// externalAnnotations drops the annotations BuildKit keeps to itself.
func externalAnnotations(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := map[string]string{}
	for k, v := range in {
		if k == "containerd.io/uncompressed" || k == "buildkit/createdat" || strings.HasPrefix(k, "containerd.io/distribution.source.") {
			continue
		}
		out[k] = v
	}
	return out
}

// fillHistory gives history entries without a time the time of the entry
// before (or of the first timed one), as the exporter's
// normalizeLayersAndHistory does once every layer entry has a time.
func fillHistory(history []ocispec.History) []ocispec.History {
	var created *time.Time
	var untimed bool
	for _, h := range history {
		if h.Created != nil {
			created = h.Created
			if untimed {
				break
			}
		} else {
			untimed = true
		}
	}
	untimed = false
	for i, h := range history {
		if h.Created != nil {
			if untimed {
				created = h.Created
			}
		} else {
			untimed = true
			h.Created = created
		}
		history[i] = h
	}
	return history
}

// patchConfig is the exporter's patchImageConfig for an image with no
// inline cache.
func patchConfig(dt []byte, diffIDs []digest.Digest, history []ocispec.History, epoch time.Time, baseImg *dockerspec.DockerOCIImage) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(dt, &m); err != nil {
		return nil, err
	}
	rootFS := ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}
	rdt, err := json.Marshal(rootFS)
	if err != nil {
		return nil, err
	}
	m["rootfs"] = rdt

	diverged := false
	for i, h := range history {
		if !diverged && baseImg != nil && i < len(baseImg.History) && reflect.DeepEqual(h, baseImg.History[i]) {
			continue
		}
		diverged = true
		if h.Created == nil || h.Created.After(epoch) {
			history[i].Created = &epoch
		}
	}
	hdt, err := json.Marshal(history)
	if err != nil {
		return nil, err
	}
	m["history"] = hdt

	if v, ok := m["created"]; ok {
		var tm time.Time
		if err := json.Unmarshal(v, &tm); err != nil {
			return nil, fmt.Errorf("config created time %s: %w", v, err)
		}
		if tm.After(epoch) {
			if m["created"], err = json.Marshal(&epoch); err != nil {
				return nil, err
			}
		}
	} else {
		var tm *time.Time
		for _, h := range history {
			if h.Created != nil {
				tm = h.Created
			}
		}
		if m["created"], err = json.Marshal(&tm); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

// MakeIndex writes the index BuildKit's exporter writes for a multi-platform
// build without attestations.
func MakeIndex(manifests []Manifest, oci bool) (Blob, error) {
	mt := ocispec.MediaTypeImageIndex
	if !oci {
		mt = dockerManifestList
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt}
	for _, m := range manifests {
		d := m.Manifest.Descriptor
		p := m.Platform
		d.Platform = &p
		idx.Manifests = append(idx.Manifests, d)
	}
	dt, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return Blob{}, err
	}
	return blobOf(mt, dt), nil
}
