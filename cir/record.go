// Package cir is the record of a CIR (Container Intermediate
// Representation): an image that holds an application's allotments and the
// ids of its direct dependencies, assembled per platform at deploy time. The
// record lives in the image config under LabelKey; docs/cir.md specifies it.
// Like package field, it has no BuildKit imports: inspect and the proxy read
// it.
package cir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LabelKey is the image config label holding the CIR record. Its presence
// is what makes an image a CIR.
const LabelKey = "org.2dfs.cir"

// RecordVersion is the version this package writes and the only one it reads.
const RecordVersion = 1

// maxRecordBytes caps what Decode parses: a record lists direct
// dependencies and a few platforms, never megabytes.
const maxRecordBytes = 1 << 20

// NotDeployedEntrypoint is the entrypoint of a CIR image. A CIR has no base
// and no interpreter, so a runtime that pulls it by mistake must not start a
// broken container: it fails to exec this path, and the path is the message
// ("exec: \"/this image is a 2DFS CIR...\": no such file or directory"). A
// path needs no binary of any architecture, which keeps the CIR one
// platform-independent manifest.
const NotDeployedEntrypoint = "/this image is a 2DFS CIR (application and dependency ids only); assemble it for a platform with: 2dfs deploy REF --platform os/arch"

// Record is what a CIR carries besides its application allotments.
type Record struct {
	Version int `json:"version"`
	// Base is the image the dependencies are assembled on.
	Base Base `json:"base"`
	// Dependencies are the direct dependencies, as the descriptor lists them.
	Dependencies Dependencies `json:"dependencies"`
	// Resolver holds the settings the lazy-builder resolves with.
	Resolver Resolver `json:"resolver"`
	// Config is applied to the assembled image over the base's.
	Config Config `json:"config"`
}

// Base pins the base image by digest.
type Base struct {
	// Ref is the base by digest (name@sha256:...), the digest of what the
	// tag named at pre-build: an index for a multi-platform base.
	Ref string `json:"ref"`
	// Platforms are the platforms the pre-build checked the base offers,
	// each with its config digest, sorted by platform.
	Platforms []BasePlatform `json:"platforms"`
}

// BasePlatform is one platform of the base.
type BasePlatform struct {
	// Platform is os/arch[/variant].
	Platform string `json:"platform"`
	// Config is the digest of the base's image config for the platform.
	Config string `json:"config"`
}

// Dependencies are the direct dependency ids.
type Dependencies struct {
	// Apt are Debian packages, "name" or "name=version".
	Apt []string `json:"apt,omitempty"`
	// Pip are PEP 508 requirements, names PEP 503-normalized.
	Pip []string `json:"pip,omitempty"`
}

// Resolver holds how dependencies are resolved.
type Resolver struct {
	// PipIndex is the PEP 503 simple index URL (no credentials).
	PipIndex string `json:"pipIndex,omitempty"`
	// PipAuthSecret names the BuildKit secret holding the index's
	// Authorization header; the deploy must be given it.
	PipAuthSecret string `json:"pipAuthSecret,omitempty"`
}

// Config is the descriptor's config block. Entrypoint and Cmd are nil when
// not given (keep the base's) and empty lists when cleared.
type Config struct {
	Entrypoint   *[]string `json:"entrypoint,omitempty"`
	Cmd          *[]string `json:"cmd,omitempty"`
	Env          []string  `json:"env,omitempty"`
	WorkingDir   string    `json:"workdir,omitempty"`
	User         string    `json:"user,omitempty"`
	ExposedPorts []string  `json:"exposedPorts,omitempty"`
}

// Platform returns the base's entry for a platform ("linux/arm64").
func (r *Record) Platform(p string) (BasePlatform, bool) {
	i := slices.IndexFunc(r.Base.Platforms, func(b BasePlatform) bool { return b.Platform == p })
	if i < 0 {
		return BasePlatform{}, false
	}
	return r.Base.Platforms[i], true
}

// PlatformNames lists the base's platforms.
func (r *Record) PlatformNames() []string {
	out := make([]string, len(r.Base.Platforms))
	for i, p := range r.Base.Platforms {
		out[i] = p.Platform
	}
	return out
}

// Encode returns the label value: stable bytes for the same record.
func (r *Record) Encode() (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// Decode parses and validates a label value. A record of another version
// is refused by its version before anything else is read, so a newer
// record gets "upgrade", not a complaint about an unknown field.
func Decode(value string) (*Record, error) {
	if len(value) > maxRecordBytes {
		return nil, fmt.Errorf("CIR record: label %s is %d bytes, over the %d byte limit", LabelKey, len(value), maxRecordBytes)
	}
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal([]byte(value), &head); err != nil {
		return nil, fmt.Errorf("CIR record: label %s is not valid JSON: %w", LabelKey, err)
	}
	switch {
	case head.Version == nil:
		return nil, fmt.Errorf("CIR record: label %s has no version", LabelKey)
	case *head.Version != RecordVersion:
		return nil, fmt.Errorf("CIR record: version %d is not known to this 2dfs, which reads version %d; upgrade 2dfs", *head.Version, RecordVersion)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("CIR record: label %s is not valid: %w", LabelKey, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

var (
	digestRe   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	platformRe = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)
)

// Validate checks the record on its own.
func (r *Record) Validate() error {
	if r.Version != RecordVersion {
		return fmt.Errorf("CIR record: version %d is not known to this 2dfs, which reads version %d; upgrade 2dfs", r.Version, RecordVersion)
	}
	if r.Base.Ref == "" {
		return fmt.Errorf("CIR record: base.ref is empty")
	}
	if len(r.Base.Platforms) == 0 {
		return fmt.Errorf("CIR record: base.platforms is empty; the pre-build pins the base for at least one platform")
	}
	for i, p := range r.Base.Platforms {
		if !platformRe.MatchString(p.Platform) {
			return fmt.Errorf("CIR record: base.platforms[%d]: %q is not os/arch[/variant]", i, p.Platform)
		}
		if !digestRe.MatchString(p.Config) {
			return fmt.Errorf("CIR record: base.platforms[%d] (%s): config %q is not a sha256 digest", i, p.Platform, p.Config)
		}
		if i > 0 && r.Base.Platforms[i-1].Platform >= p.Platform {
			return fmt.Errorf("CIR record: base.platforms[%d] (%s): platforms must be sorted and listed once", i, p.Platform)
		}
	}
	if len(r.Dependencies.Apt) == 0 && len(r.Dependencies.Pip) == 0 {
		return fmt.Errorf("CIR record: no dependencies")
	}
	if len(r.Dependencies.Pip) > 0 && r.Resolver.PipIndex == "" {
		return fmt.Errorf("CIR record: pip dependencies without resolver.pipIndex")
	}
	return nil
}

// FromConfig reads the record of an image config; nil and no error when the
// image is no CIR.
func FromConfig(cfg *ocispec.Image) (*Record, error) {
	value, ok := cfg.Config.Labels[LabelKey]
	if !ok {
		return nil, nil
	}
	return Decode(value)
}
