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
	Flags    []string `json:"flags,omitempty"` // as given to hack/bench, besides the defaults
	Seconds  float64  `json:"seconds"`
	Machine  string   `json:"machine"`
	Splits   int      `json:"splits"`
	SplitMiB int      `json:"split_mib"`
	Cols     int      `json:"cols"`
	Runs     int      `json:"runs"`
	Pulls    int      `json:"pulls,omitempty"` // experiment 4, per path
	Seed     uint64   `json:"seed"`
	Rows     []*Row   `json:"rows"`
	// StepSeconds is the wall time of each step, in the order run (6
	// runs twice: machine limits first, build throughput later).
	StepSeconds []StepTime `json:"step_seconds,omitempty"`
	Notes       []string   `json:"notes,omitempty"`
	// CIR is experiment 9's measurements besides its rows (hack/bench -cir).
	CIR *CIRInfo `json:"cir,omitempty"`
}

// StepTime is the wall time of one step of the run.
type StepTime struct {
	Exp     int     `json:"experiment"`
	Seconds float64 `json:"seconds"`
}

// Ratio kinds.
const (
	// Speedup is peer time ÷ our time, per run: above 1 we are faster.
	Speedup = "speedup"
	// Relative is our figure ÷ the peer's, per run (time ratios where the
	// target is an upper bound, throughput as a fraction of a limit).
	Relative = "ours/peer"
)

// Settings of a comparison: both sides at the same layer compression, or
// each tool at its own defaults.
const (
	// Equal is every peer at our CLI's compression (zstd level 1, forced).
	Equal = "equal: zstd -1"
	// EqualGzip is ours exporting gzip, like the peers' default.
	EqualGzip = "equal: gzip"
	// Defaults is each tool at its defaults: ours zstd -1, BuildKit's
	// Dockerfile builds gzip.
	Defaults = "defaults: ours zstd -1, peer gzip"
)

// Row is one figure: our values and the peer's, per run, and their ratio.
type Row struct {
	Exp int `json:"experiment"`
	// Key names the figure for the generated prose (summary.go).
	Key       string    `json:"key,omitempty"`
	Name      string    `json:"name"`
	Settings  string    `json:"settings,omitempty"`
	Unit      string    `json:"unit"`
	Ours      []float64 `json:"ours"`
	Peer      string    `json:"peer,omitempty"`
	PeerVals  []float64 `json:"peer_values,omitempty"`
	RatioKind string    `json:"ratio_kind,omitempty"`
	// Ratios are per run: ours against the peer of the same run.
	Ratios []float64 `json:"ratios,omitempty"`
	// RatioOfMedians is the ratio of the two medians, the other
	// statistic a verdict must agree with.
	RatioOfMedians float64 `json:"ratio_of_medians,omitempty"`
	Target         string  `json:"target,omitempty"`
	// TargetMin and TargetMax bound the ratio (0: no bound); a target is
	// met when the median of the per-run ratios and the ratio of medians
	// both meet it, missed when both miss it, and Undecided otherwise.
	TargetMin float64 `json:"target_min,omitempty"`
	TargetMax float64 `json:"target_max,omitempty"`
	Met       *bool   `json:"met,omitempty"`
	Undecided bool    `json:"undecided,omitempty"`
	Detail    string  `json:"detail,omitempty"`
}

// ratio is ours against the peer's figure as the row's kind reads it.
func (r *Row) ratio(ours, peer float64) float64 {
	if r.RatioKind == Speedup {
		return safeDiv(peer, ours)
	}
	return safeDiv(ours, peer)
}

// meets says whether a ratio is within the row's target.
func (r *Row) meets(v float64) bool {
	return (r.TargetMin == 0 || v >= r.TargetMin) && (r.TargetMax == 0 || v <= r.TargetMax)
}

// add records a row, computing per-run ratios, the ratio of medians and
// whether the target is met.
func (b *bench) add(r *Row) *Row {
	if len(r.PeerVals) > 0 {
		if r.RatioKind != Speedup {
			r.RatioKind = Relative
		}
		if len(r.Ratios) == 0 {
			for i := range min(len(r.Ours), len(r.PeerVals)) {
				r.Ratios = append(r.Ratios, r.ratio(r.Ours[i], r.PeerVals[i]))
			}
		}
		r.RatioOfMedians = r.ratio(median(r.Ours), median(r.PeerVals))
	}
	if (r.TargetMin != 0 || r.TargetMax != 0) && len(r.Ratios) > 0 {
		a, c := r.meets(median(r.Ratios)), r.meets(r.RatioOfMedians)
		ok := a && c
		r.Met, r.Undecided = &ok, a != c
	}
	b.res.Rows = append(b.res.Rows, r)
	b.logf("exp %d %s: %s%s", r.Exp, r.label(), fmtStat(r.Ours, r.Unit), ratioText(r))
	return r
}

// label is the row's name with its settings.
func (r *Row) label() string {
	if r.Settings == "" {
		return r.Name
	}
	return r.Name + " [" + r.Settings + "]"
}

// verdict is the met column: yes, no, or which statistic says what.
func (r *Row) verdict() string {
	switch {
	case r.Met == nil:
		return ""
	case r.Undecided:
		return fmt.Sprintf("**undecided** (median of ratios %s×, ratio of medians %s×)", fmtNum(median(r.Ratios)), fmtNum(r.RatioOfMedians))
	case *r.Met:
		return "yes"
	default:
		return "**no**"
	}
}

func ratioText(r *Row) string {
	if len(r.Ratios) == 0 {
		return ""
	}
	return fmt.Sprintf(" | %s %s | %s: ratio of medians %s×, per run %s", r.Peer, fmtStat(r.PeerVals, r.Unit), r.RatioKind, fmtNum(r.RatioOfMedians), fmtStat(r.Ratios, "×"))
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
	case a > 0 && a < 0.001:
		// A CIR against a fat image: "0.000" would say nothing.
		return fmt.Sprintf("%.2g", v)
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
