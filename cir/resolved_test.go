package cir

import (
	"fmt"
	"strings"
	"testing"
)

// The label stays small whatever the closure (containerd refuses a label
// over 4,096 bytes, key included); the closure goes into the config and
// reads back whole, the config's other fields kept.
func TestResolvedLabelAndConfig(t *testing.T) {
	r := &Resolved{Version: ResolvedVersion, CIR: "registry.example.com/some/long/repository/name@" + cfgA, Platform: "linux/amd64", Python: "3.11", LayerBudget: 100}
	for i := 0; i < 500; i++ {
		r.Debs = append(r.Debs, ResolvedDeb{Name: fmt.Sprintf("package-%03d", i), Version: "1.2.3-4+deb12u1", Arch: "amd64", Digest: cfgA})
		r.AptLayers = append(r.AptLayers, []string{fmt.Sprintf("package-%03d", i)})
	}
	label, err := r.Label()
	if err != nil {
		t.Fatal(err)
	}
	if len(ResolvedLabelKey)+len(label) > 1024 || !strings.Contains(label, `"debs":500,"wheels":0,"layerBudget":100,"aptLayers":500`) {
		t.Errorf("label of %d bytes: %s", len(label), label)
	}
	config, err := r.Embed([]byte(`{"architecture":"amd64","config":{"Labels":{"a":"b"}},"org.2dfs.field.allotments":[1]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(config), `"architecture":"amd64","config":{"Labels":{"a":"b"}},"org.2dfs.cir.closure":{"version":2,`) || !strings.HasSuffix(string(config), `"org.2dfs.field.allotments":[1]}`) {
		t.Errorf("config %.200s", config)
	}
	back, err := ResolvedFromConfig(config)
	if err != nil || len(back.Debs) != 500 || back.Debs[499].Name != "package-499" || len(back.AptLayers) != 500 {
		t.Fatalf("read back: %v", err)
	}
	if none, err := ResolvedFromConfig([]byte(`{"architecture":"amd64"}`)); none != nil || err != nil {
		t.Errorf("no closure: %v %v", none, err)
	}
	if _, err := ResolvedFromConfig([]byte(`{"org.2dfs.cir.closure":{"version":1}}`)); err == nil || !strings.Contains(err.Error(), "version 1 is not known") {
		t.Errorf("version 1: %v", err)
	}
}
