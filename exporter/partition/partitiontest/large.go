package partitiontest

import (
	"encoding/json"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/field"
)

// Padding says where Large puts the bulk of a large config.
type Padding int

const (
	// PadLabel puts it in one config label, a string nested three
	// objects deep (config.Labels).
	PadLabel Padding = iota
	// PadHistory puts it in many small empty_layer history entries.
	PadHistory
)

// Large builds a 2DFS image like New whose config is exactly size bytes,
// the bulk placed as pad says: the large configs a proxy must partition
// within bounded memory.
func Large(mediaType string, baseLayers int, size int, pad Padding, cells ...field.Cell) *Image {
	img := New(mediaType, baseLayers, cells...)
	var cfg map[string]any
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		panic(err)
	}
	labels := cfg["config"].(map[string]any)["Labels"].(map[string]any)
	if pad == PadHistory {
		// Entries of 64 bytes ({"comment":"y…","empty_layer":true} and a
		// comma) up to within 64 bytes of size; the label below tops up.
		h := cfg["history"].([]any)
		for free := size - len(mustJSON(cfg)); free > 64; free -= 64 {
			h = append(h, map[string]any{"comment": strings.Repeat("y", 64-37), "empty_layer": true})
		}
		cfg["history"] = h
	}
	// A label of n bytes adds n plus its key's overhead, once.
	labels["org.example.pad"] = ""
	n := size - len(mustJSON(cfg))
	if n < 0 {
		panic(fmt.Sprintf("partitiontest: a config of %d bytes is too small", size))
	}
	labels["org.example.pad"] = strings.Repeat("x", n)
	img.Config = mustJSON(cfg)
	if len(img.Config) != size {
		panic(fmt.Sprintf("partitiontest: config is %d bytes, not %d", len(img.Config), size))
	}
	var m map[string]any
	if err := json.Unmarshal(img.Manifest, &m); err != nil {
		panic(err)
	}
	m["config"].(map[string]any)["digest"] = digest.FromBytes(img.Config)
	m["config"].(map[string]any)["size"] = len(img.Config)
	img.Manifest = mustJSON(m)
	return img
}
