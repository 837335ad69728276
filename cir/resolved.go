package cir

import (
	"bytes"
	"encoding/json"
)

// ResolvedLabelKey is the label of an assembled image that says what the
// lazy-builder resolved: without a lock, the closure is resolved fresh at
// each deploy, and this is the record of it.
const ResolvedLabelKey = "org.2dfs.cir.resolved"

// Resolved is the value of ResolvedLabelKey.
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
	// LayerBudget and AptLayers are set when the apt closure was over the
	// layer budget and packages share layers: AptLayers lists the names in
	// each layer of the apt row, in column order (docs/cir.md).
	LayerBudget int        `json:"layerBudget,omitempty"`
	AptLayers   [][]string `json:"aptLayers,omitempty"`
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

// Encode returns the label value.
func (r *Resolved) Encode() (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}
