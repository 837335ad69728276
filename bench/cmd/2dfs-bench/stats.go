package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Results is everything one run of the benchmark measured (results.json).
type Results struct {
	Started  string   `json:"started"`
	Seconds  float64  `json:"seconds"`
	Machine  string   `json:"machine"`
	Splits   int      `json:"splits"`
	SplitMiB int      `json:"split_mib"`
	Cols     int      `json:"cols"`
	Runs     int      `json:"runs"`
	Seed     uint64   `json:"seed"`
	Rows     []*Row   `json:"rows"`
	Notes    []string `json:"notes,omitempty"`
}

// Ratio kinds.
const (
	// Speedup is peer time ÷ our time, per run: above 1 we are faster.
	Speedup = "speedup"
	// Relative is our figure ÷ the peer's, per run (time ratios where the
	// target is an upper bound, throughput as a fraction of a limit).
	Relative = "ours/peer"
)

// Row is one figure: our values and the peer's, per run, and their ratio.
type Row struct {
	Exp       int       `json:"experiment"`
	Name      string    `json:"name"`
	Unit      string    `json:"unit"`
	Ours      []float64 `json:"ours"`
	Peer      string    `json:"peer,omitempty"`
	PeerVals  []float64 `json:"peer_values,omitempty"`
	RatioKind string    `json:"ratio_kind,omitempty"`
	Ratios    []float64 `json:"ratios,omitempty"`
	Target    string    `json:"target,omitempty"`
	// TargetMin and TargetMax bound the median ratio (0: no bound).
	TargetMin float64 `json:"target_min,omitempty"`
	TargetMax float64 `json:"target_max,omitempty"`
	Met       *bool   `json:"met,omitempty"`
	Detail    string  `json:"detail,omitempty"`
}

// add records a row, computing per-run ratios and whether the target is met.
func (b *bench) add(r *Row) *Row {
	if len(r.PeerVals) > 0 && len(r.Ratios) == 0 {
		for i := range min(len(r.Ours), len(r.PeerVals)) {
			o, p := r.Ours[i], r.PeerVals[i]
			switch r.RatioKind {
			case Speedup:
				r.Ratios = append(r.Ratios, safeDiv(p, o))
			default:
				r.RatioKind = Relative
				r.Ratios = append(r.Ratios, safeDiv(o, p))
			}
		}
	}
	if (r.TargetMin != 0 || r.TargetMax != 0) && len(r.Ratios) > 0 {
		m := median(r.Ratios)
		ok := (r.TargetMin == 0 || m >= r.TargetMin) && (r.TargetMax == 0 || m <= r.TargetMax)
		r.Met = &ok
	}
	b.res.Rows = append(b.res.Rows, r)
	b.logf("exp %d %s: %s%s", r.Exp, r.Name, fmtStat(r.Ours, r.Unit), ratioText(r))
	return r
}

func ratioText(r *Row) string {
	if len(r.Ratios) == 0 {
		return ""
	}
	return fmt.Sprintf(" | %s %s | %s %s", r.Peer, fmtStat(r.PeerVals, r.Unit), r.RatioKind, fmtStat(r.Ratios, "×"))
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile by nearest rank.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return fmt.Sprint(v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// fmtStat prints "median (min–max) unit", or the value alone for one run.
func fmtStat(v []float64, unit string) string {
	if len(v) == 0 {
		return "–"
	}
	u := unit
	if u != "×" && u != "" {
		u = " " + u
	}
	if len(v) == 1 {
		return fmtNum(v[0]) + u
	}
	return fmt.Sprintf("%s%s (%s–%s)", fmtNum(median(v)), u, fmtNum(slices.Min(v)), fmtNum(slices.Max(v)))
}

func phaseText(ps []Phases) string {
	keys := []string{"context", "copy", "export", "push", "total"}
	var parts []string
	for _, k := range keys {
		var v []float64
		for _, p := range ps {
			v = append(v, p[k])
		}
		if len(v) > 0 && median(v) > 0 {
			parts = append(parts, fmt.Sprintf("%s %ss", k, fmtNum(median(v))))
		}
	}
	return strings.Join(parts, ", ")
}
