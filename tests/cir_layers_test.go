package tests

import (
	"strings"
	"testing"
)

// wheelBlobs maps each wheel that has a layer of its own in the image ref
// to that layer's blob, read from the image history ("2dfs cir wheel NAME
// VERSION (DIGEST)"), not from the layer's position: wheels are stacked
// largest first, so a position depends on every wheel's size.
func wheelBlobs(t *testing.T, ref string) map[string]string {
	t.Helper()
	img := remoteImage(t, ref)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ls := layers(t, ref)
	out := map[string]string{}
	i := 0
	for _, h := range cfg.History {
		if h.EmptyLayer {
			continue
		}
		if i >= len(ls) {
			t.Fatalf("%s: more history entries with layers than layers", ref)
		}
		if what, ok := strings.CutPrefix(h.CreatedBy, "2dfs cir wheel "); ok && !strings.Contains(what, ", ") {
			out[strings.Fields(what)[0]] = ls[i].Digest.String()
		}
		i++
	}
	return out
}
