package main

import (
	"slices"
	"strings"
	"testing"
)

// cirNodeResults is cirResults with node-side cases of the shape a real
// run has: (b) and (c) fresh-resolved slower than locked.
func cirNodeResults(t *testing.T) *bench {
	b := cirResults(t)
	b.cirNodeRows(map[string][]cirCase{
		"fat-a":       {{pull: 10, regMB: 235}, {pull: 12, regMB: 235}},
		"fat-b":       {{pull: 8, regMB: 150}, {pull: 9, regMB: 150}},
		"fat-a-zstd":  {{pull: 7, regMB: 190}, {pull: 9, regMB: 190}},
		"fat-b-zstd":  {{pull: 5, regMB: 120}, {pull: 6, regMB: 120}},
		"node-a":      {{deploy: 40, regMB: 90, archiveMB: 130, debs: 77}, {deploy: 44, regMB: 90, archiveMB: 130, debs: 77}},
		"node-b":      {{deploy: 6, regMB: 1, archiveMB: 5, debs: 9}, {deploy: 5, regMB: 1, archiveMB: 5, debs: 9}},
		"node-b-lock": {{deploy: 2, regMB: 1, archiveMB: 5, debs: 9}, {deploy: 2, regMB: 1, archiveMB: 5, debs: 9}},
		"node-c":      {{deploy: 8, regMB: 200}, {deploy: 9, regMB: 200}},
		"node-c-lock": {{deploy: 4, regMB: 200}, {deploy: 5, regMB: 200}},
	})
	return b
}

// The node-side rows time the deploy alone (the image is in containerd
// when it ends) against the same runs' fat pulls: fat-a for (a) and (c),
// fat-b for (b); ≥2× on (b) and (c) in both variants.
func TestCIRNodeRows(t *testing.T) {
	b := cirNodeResults(t)
	a := b.row("cir/node/deploy/a")
	if a == nil || a.Met != nil || a.Ratios[0] != 10.0/40 || a.Ours[1] != 44 {
		t.Fatalf("node a = %+v", a)
	}
	nb := b.row("cir/node/deploy/b")
	if nb == nil || nb.Met == nil || *nb.Met || nb.Ratios[0] != 8.0/6 {
		t.Fatalf("node b (8 s against 6 s) must miss ≥2×: %+v", nb)
	}
	if r := b.row("cir/node/deploy/b-lock"); r == nil || r.Met == nil || !*r.Met || r.Ratios[0] != 4 {
		t.Fatalf("node b-lock = %+v", r)
	}
	if r := b.row("cir/node/deploy/c-lock"); r == nil || r.Met == nil || !*r.Met || r.PeerVals[0] != 10 {
		t.Fatalf("node c-lock = %+v", r)
	}
	if r := b.row("cir/node/registry/c"); r == nil || r.Ours[0] != 200 || r.PeerVals[0] != 235 {
		t.Fatalf("node registry c = %+v", r)
	}
	if r := b.row("cir/node/archive/b-lock"); r == nil || r.Ours[0] != 5 {
		t.Fatalf("node archive b-lock = %+v", r)
	}
	// At equal settings: the zstd fat pulls of the same runs.
	if r := b.row("cir/node/deploy-zstd/b-lock"); r == nil || r.Settings != Equal || r.Ratios[0] != 2.5 || r.Met == nil || !*r.Met {
		t.Fatalf("node b-lock at equal settings = %+v", r)
	}
	if r := b.row("cir/node/deploy-zstd/c"); r == nil || r.PeerVals[0] != 7 || r.Met == nil || *r.Met {
		t.Fatalf("node c at equal settings = %+v", r)
	}
	if r := b.row("cir/node/registry-zstd/b"); r == nil || r.PeerVals[0] != 120 {
		t.Fatalf("node registry b at equal settings = %+v", r)
	}
	// The registry round-trip rows are still there, unchanged.
	if r := b.row("cir/deploy/b"); r == nil || r.Ratios[0] != 8.0/3 {
		t.Fatalf("deploy b = %+v", r)
	}
}

// A variant without cases (a run stopped early) has no rows.
func TestCIRNodeRowsMissingVariant(t *testing.T) {
	b := cirResults(t)
	b.cirNodeRows(map[string][]cirCase{"fat-a": {{pull: 10}}, "node-a": {{deploy: 20}}})
	if b.row("cir/node/deploy/a") == nil || b.row("cir/node/deploy/b") != nil {
		t.Fatal("rows of variants that ran, none of those that did not")
	}
	if !strings.Contains(b.cirNodeMarkdown(), "| (a) empty caches, fresh resolution |") || strings.Contains(b.cirNodeMarkdown(), "--lock |") {
		t.Errorf("node table:\n%s", b.cirNodeMarkdown())
	}
}

func TestCIRNodeExtra(t *testing.T) {
	for v, want := range map[string][]string{
		"node-a":      nil,
		"node-b":      nil,
		"node-c":      {"--cache-from", "type=registry,ref=reg/cache:deps"},
		"node-b-lock": {"--lock", "/n/a.lock"},
		"node-c-lock": {"--cache-from", "type=registry,ref=reg/cache:deps", "--lock", "/n/a.lock"},
	} {
		if got := cirNodeExtra(v, "reg/cache:deps", "/n/a.lock"); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", v, got, want)
		}
	}
	// Every node variant has its row spec, and the other way round.
	var specs []string
	for _, s := range cirNodeSpecs {
		specs = append(specs, s.v)
	}
	if !slices.Equal(specs, cirNodeVariants) {
		t.Errorf("specs %q, variants %q", specs, cirNodeVariants)
	}
}

// The section has the node table beside the registry one, labelled fresh
// or locked; the summary and the README say both.
func TestCIRNodeSections(t *testing.T) {
	b := cirNodeResults(t)
	md := b.cirMarkdown()
	for _, want := range []string{
		"**Deploy through the registry**",
		"**Deploy on the node**",
		"| (b) b already deployed on the node, fresh resolution | 5.50 s (5.00–6.00) | 5.50 s (5.00–6.00) | 1.00× (per run 0.833–1.20) | ≥2× | **no** | 8.50 s (8.00–9.00) | 1.55× (per run 1.33–1.80) | ≥2× | **no** | 1.00 MB / 120 MB / 150 MB | 5.00 MB |",
		"| (b) b already deployed on the node, --lock | 2.00 s (2.00–2.00) | 5.50 s (5.00–6.00) | 2.75× (per run 2.50–3.00) | ≥2× | yes | 8.50 s (8.00–9.00) | 4.25× (per run 4.00–4.50) | ≥2× | yes |",
		"**Node-side (c) fresh node, --cache-from the registry dependency cache, --lock**: 4.50 s (4.00–5.00) against 8.00 s (7.00–9.00) for the fat pull at equal settings (zstd -1), speedup 1.78× (per run 1.75–1.80), target ≥2×: no; against 11.0 s (10.0–12.0) for the fat pull at the default (gzip)",
		"(b)** through the registry",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
	// An undecided verdict reads plainly in a sentence (no stray "**").
	u := cirResults(t)
	u.cirNodeRows(map[string][]cirCase{"fat-b": {{pull: 14.4}, {pull: 13.9}, {pull: 16.6}}, "node-b": {{deploy: 7.91}, {deploy: 6.22}, {deploy: 8}}})
	if said := u.cirSummary(); !strings.Contains(said, "target ≥2×: undecided (median of ratios") || strings.Contains(said, "undecided**") {
		t.Errorf("summary:\n%s", said)
	}
	if readme := b.cirReadme(); !strings.Contains(readme, "| deploy on the node's containerd-worker buildkitd, (c) fresh node, --cache-from the registry dependency cache, fresh resolution | 8.50 s (8.00–9.00) | 8.00 s (7.00–9.00) | speedup 0.941×") {
		t.Errorf("README table:\n%s", readme)
	}
}
