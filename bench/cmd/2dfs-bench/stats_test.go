package main

import (
	"math"
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

// Ratios are computed per run against the peer of the same run, and the
// target is judged on their median.
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
