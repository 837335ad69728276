package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMedianAndPercentile(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing must be NaN")
	}
	v := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if p := percentile(v, 50); p != 5 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(v, 99); p != 10 {
		t.Errorf("p99 = %v", p)
	}
}

// Ratios are computed per run against the peer of the same run and as the
// ratio of the medians; the target is judged on both.
func TestAddComputesRatiosAndTargets(t *testing.T) {
	b := &bench{res: &Results{}, started: time.Now()}
	speed := b.add(&Row{Name: "x", Ours: []float64{1, 2, 4}, PeerVals: []float64{3, 4, 4}, RatioKind: Speedup, TargetMin: 2})
	if speed.Ratios[0] != 3 || speed.Ratios[1] != 2 || speed.Ratios[2] != 1 || speed.Met == nil || !*speed.Met {
		t.Fatalf("speedup row = %+v", speed)
	}
	rel := b.add(&Row{Name: "y", Ours: []float64{1.1, 1.2}, PeerVals: []float64{1, 1}, TargetMax: 1.02})
	if rel.RatioKind != Relative || rel.Met == nil || *rel.Met {
		t.Fatalf("relative row = %+v", rel)
	}
	if len(b.res.Rows) != 2 {
		t.Fatalf("rows = %d", len(b.res.Rows))
	}
}

// The two statistics can fall on either side of a target for the same data:
// the row then says undecided, not met.
func TestVerdictNeedsBothStatistics(t *testing.T) {
	b := &bench{res: &Results{}, started: time.Now()}
	r := b.add(&Row{Name: "pull", Ours: []float64{0.8, 1.0, 1.3}, PeerVals: []float64{1.0, 1.0, 1.0}, TargetMax: 1.02})
	if r.RatioOfMedians != 1 || median(r.Ratios) != 1 || r.Met == nil || !*r.Met || r.Undecided {
		t.Fatalf("agreeing row = %+v", r)
	}
	r = b.add(&Row{Name: "pull", Ours: []float64{0.9, 1.0, 1.3}, PeerVals: []float64{1.0, 0.95, 1.1}, TargetMax: 1.02})
	// per run 0.9, 1.053, 1.18: median 1.053 (missed); medians 1.0 / 1.0 = 1.0 (met).
	if r.Met == nil || *r.Met || !r.Undecided || !strings.Contains(r.verdict(), "undecided") {
		t.Fatalf("disagreeing row = %+v, verdict %q", r, r.verdict())
	}
	if agree, _, _ := statisticsAgree(r.Ours, r.PeerVals, 1.02); agree {
		t.Fatal("statisticsAgree says the statistics agree")
	}
	sp := b.add(&Row{Name: "s", Ours: []float64{1, 2}, PeerVals: []float64{4, 4}, RatioKind: Speedup})
	if sp.RatioOfMedians != 4/1.5 {
		t.Fatalf("speedup ratio of medians = %v, want %v", sp.RatioOfMedians, 4/1.5)
	}
}

// The pull loop makes -pulls, then more in steps while the statistics
// disagree, and stops at -max-pulls.
func TestMorePulls(t *testing.T) {
	b := &bench{res: &Results{}, started: time.Now(), config: config{pulls: 3, maxPulls: 8}}
	agree := []float64{1, 1, 1}
	if !b.morePulls(2, agree, agree, 1.02) || b.morePulls(3, agree, agree, 1.02) || b.res.Pulls != 3 {
		t.Fatalf("agreeing statistics: want exactly 3 pulls, recorded %d", b.res.Pulls)
	}
	ours, peer := []float64{0.9, 1.0, 1.3}, []float64{1.0, 0.95, 1.1}
	if !b.morePulls(3, ours, peer, 1.02) {
		t.Fatal("disagreeing statistics after -pulls: want more pulls")
	}
	if !b.morePulls(5, ours, peer, 1.02) {
		t.Fatal("a round of pullStep pulls stopped half way")
	}
	if b.morePulls(8, ours, peer, 1.02) || b.res.Pulls != 8 {
		t.Fatalf("-max-pulls 8 not respected (recorded %d)", b.res.Pulls)
	}
}

// Re-built allotments are counted only once the progress shows all of
// them: progress the parser cannot read is an error, not "0 re-built".
func TestRebuiltAllotmentsCountsFirst(t *testing.T) {
	progress := "#5 [2dfs 0,0] copy /a\n#5 CACHED\n#6 [2dfs 0,1] copy /b\n#6 DONE 0.2s\n"
	if n, err := rebuiltAllotments(progress, 2); err != nil || n != 1 {
		t.Fatalf("rebuilt = %d, %v; want 1", n, err)
	}
	if _, err := rebuiltAllotments(progress, 3); err == nil {
		t.Fatal("2 allotment vertices of 3 counted without an error")
	}
	if _, err := rebuiltAllotments("step 5: [2dfs 0,0] copy /a (cached)\n", 1); err == nil {
		t.Fatal("progress in another format counted as nothing re-built")
	}
}

// Generated sections replace the text between their markers and nothing
// else; a marker without its end is an error naming its line.
func TestReplaceSections(t *testing.T) {
	in := "# Doc\nprose\n<!-- bench:readme -->\nold table\nold line\n<!-- /bench:readme -->\nmore prose\n"
	out, n, err := replaceSections(in, map[string]string{"readme": "| new |\n"})
	want := "# Doc\nprose\n<!-- bench:readme -->\n\n| new |\n\n<!-- /bench:readme -->\nmore prose\n"
	if err != nil || n != 1 || out != want {
		t.Fatalf("got %q, %d, %v; want %q", out, n, err, want)
	}
	if _, _, err := replaceSections("a\n<!-- bench:readme -->\nb\n", map[string]string{"readme": "x"}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("unclosed section: err = %v", err)
	}
	if _, _, err := replaceSections("<!-- bench:nope -->\n<!-- /bench:nope -->\n", map[string]string{"readme": "x"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown section: err = %v", err)
	}
}

// The documents -render updates have well-formed markers, each section
// once: a hand edit that broke one (a note pasted inside the sentence that
// names the markers) made the next render fail after a 30-minute run.
func TestDocsMarkers(t *testing.T) {
	all := map[string]string{}
	for _, name := range sectionNames {
		all[name] = "GENERATED-SECTION-" + name
	}
	for _, doc := range []string{"../../../docs/benchmarks.md", "../../../README.md"} {
		dt, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		out, n, err := replaceSections(string(dt), all)
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if n != 2 {
			t.Errorf("%s: %d generated sections, want 2", doc, n)
		}
		for _, name := range sectionNames {
			if c := strings.Count(out, "GENERATED-SECTION-"+name+"\n"); c > 1 {
				t.Errorf("%s: section %s %d times", doc, name, c)
			}
		}
	}
}
