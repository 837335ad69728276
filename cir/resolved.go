package cir

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ResolvedLabelKey is the label of an assembled image that says what the
// lazy-builder resolved: without a lock, the closure is resolved fresh at
// each deploy, and this is the record of it. The label holds a summary of
// bounded size (ResolvedSummary); the closure itself is under
// ResolvedConfigKey. containerd copies image labels into container labels
// and refuses any over 4,096 bytes: a closure of 60 packages in the label
// made the image unrunnable (TestCIRDebianBudget caught it).
const ResolvedLabelKey = "org.2dfs.cir.resolved"

// ResolvedConfigKey is the top-level key of the assembled image's config
// holding the whole Resolved, as field.ConfigKey holds the allotments:
// registries and copy tools keep the config blob as it is.
const ResolvedConfigKey = "org.2dfs.cir.closure"

// ResolvedVersion is the version of the label and the config key's value.
// Version 1 was the whole Resolved in the label.
const ResolvedVersion = 2

// ResolvedSummary is the value of ResolvedLabelKey.
type ResolvedSummary struct {
	Version  int    `json:"version"`
	CIR      string `json:"cir"`
	Platform string `json:"platform"`
	Python   string `json:"python,omitempty"`
	// Debs and Wheels count the closure's packages and wheels.
	Debs   int `json:"debs"`
	Wheels int `json:"wheels"`
	// LayerBudget and AptLayers (the layers of the apt row) are set when
	// the closure was grouped.
	LayerBudget int `json:"layerBudget,omitempty"`
	AptLayers   int `json:"aptLayers,omitempty"`
	WheelLayers int `json:"wheelLayers,omitempty"`
}

// Resolved is the value of ResolvedConfigKey.
type Resolved struct {
	Version int `json:"version"`
	// CIR is the CIR by digest.
	CIR string `json:"cir"`
	// Platform is the target platform assembled for.
	Platform string `json:"platform"`
	// Python is the base's interpreter version the wheels were resolved for.
	Python string          `json:"python,omitempty"`
	Debs   []ResolvedDeb   `json:"debs,omitempty"`
	Wheels []ResolvedWheel `json:"wheels,omitempty"`
	// LayerBudget, AptLayers and WheelLayers are set when the closure was
	// over the layer budget and packages or wheels share layers: AptLayers
	// lists the package names in each layer of the apt row, WheelLayers the
	// wheel names in each layer of the wheel row, in column order (each
	// set when its kind is in the closure; docs/cir.md).
	LayerBudget int        `json:"layerBudget,omitempty"`
	AptLayers   [][]string `json:"aptLayers,omitempty"`
	WheelLayers [][]string `json:"wheelLayers,omitempty"`
}

// ResolvedDeb is one package of the apt closure, in the order of its column.
type ResolvedDeb struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Digest  string `json:"digest"`
}

// ResolvedWheel is one wheel of the closure, in the order of its column.
type ResolvedWheel struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Filename string `json:"filename"`
	Digest   string `json:"digest"`
}

// Encode returns the value of ResolvedConfigKey: compact JSON, stable bytes.
func (r *Resolved) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Label returns the value of ResolvedLabelKey: its size does not grow with
// the closure.
func (r *Resolved) Label() (string, error) {
	s := ResolvedSummary{Version: r.Version, CIR: r.CIR, Platform: r.Platform, Python: r.Python, Debs: len(r.Debs), Wheels: len(r.Wheels), LayerBudget: r.LayerBudget, AptLayers: len(r.AptLayers), WheelLayers: len(r.WheelLayers)}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// Embed writes the closure into a raw image config under ResolvedConfigKey,
// keeping every other field as raw bytes (keys come out sorted, as
// field.Record.Embed writes them).
func (r *Resolved) Embed(config []byte) ([]byte, error) {
	v, err := r.Encode()
	if err != nil {
		return nil, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(config, &cfg); err != nil || cfg == nil {
		return nil, fmt.Errorf("resolved closure: image config is not a JSON object: %v", err)
	}
	cfg[ResolvedConfigKey] = v
	return json.Marshal(cfg)
}

// ResolvedFromConfig reads the closure of an assembled image's raw config;
// nil and no error when the image has none (it is no assembled CIR).
func ResolvedFromConfig(config []byte) (*Resolved, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	raw, ok := cfg[ResolvedConfigKey]
	if !ok {
		return nil, nil
	}
	var r Resolved
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("image config key %s: %w", ResolvedConfigKey, err)
	}
	if r.Version != ResolvedVersion {
		return nil, fmt.Errorf("image config key %s: version %d is not known to this 2dfs, which reads version %d", ResolvedConfigKey, r.Version, ResolvedVersion)
	}
	return &r, nil
}
