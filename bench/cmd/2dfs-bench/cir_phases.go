package main

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Where a CIR deploy's time goes, read from its plain progress log (the
// file under logs/ that `2dfs deploy --progress plain` wrote). The plain
// log gives every step's own duration ("#12 DONE 0.6s") and the export's
// sub-steps ("#162 exporting layers 3.8s done"), but no clock: steps that
// run side by side (the .deb fetches, the unpacks, the alternatives) are
// given as their count, their longest step and their sum; a phase of one
// step at a time is its duration. What no step accounts for (the 2dfs
// process, reading the CIR, the frontend's own work between solves,
// waiting for the overlapping fetches and unpacks beyond the steps listed)
// is the rest of the measured deploy time.

// Phase names, in the order a deploy goes through them.
const (
	phResolve  = "resolve base and CIR"
	phBase     = "base pull and extract"
	phCache    = "cache import"
	phApt      = "apt resolve"
	phPip      = "pip resolve"
	phFetch    = "package fetches"
	phUnpack   = "package unpacks"
	phAlt      = "alternatives"
	phApp      = "application layer"
	phMerge    = "merge"
	phExport   = "export layers"
	phUnpackTo = "export unpack into containerd"
	phPush     = "push"
	phOther    = "other steps"
)

var phaseOrder = []string{phResolve, phBase, phCache, phApt, phPip, phFetch, phUnpack, phAlt, phApp, phMerge, phExport, phUnpackTo, phPush, phOther}

// Phase is one phase of a deploy: how many steps it had, how many of them
// BuildKit found cached, the sum of their durations and the longest.
type Phase struct {
	Name    string  `json:"name"`
	Steps   int     `json:"steps"`
	Cached  int     `json:"cached,omitempty"`
	Seconds float64 `json:"seconds"`
	Longest float64 `json:"longest"`
}

// DeployPhases is one deploy's breakdown: its phases in order, the
// measured wall time of 2dfs deploy and of the pull that followed (0 for
// the node-side cases, which need none).
type DeployPhases struct {
	Deploy float64 `json:"deploy"`
	Pull   float64 `json:"pull,omitempty"`
	Phases []Phase `json:"phases"`
}

// phaseOf names the phase of a vertex from the name the frontend gave it
// (llb/cir.go, frontend/deploy.go) or BuildKit's own.
func phaseOf(name string) string {
	n := strings.TrimPrefix(name, "[2dfs cir] ")
	switch {
	case strings.HasPrefix(n, "resolve "): // the base's, the CIR's, the helper's metadata
		return phResolve
	case strings.HasPrefix(n, "base for "), strings.HasPrefix(n, "helper for "):
		return phBase
	case strings.HasPrefix(name, "importing cache manifest"):
		return phCache
	case strings.HasPrefix(n, "apt resolve "):
		return phApt
	case strings.HasPrefix(n, "pip resolve "):
		return phPip
	case strings.HasPrefix(n, "fetch "):
		return phFetch
	case strings.HasPrefix(n, "deb "), strings.HasPrefix(n, "debs "), strings.HasPrefix(n, "wheel "):
		return phUnpack
	case strings.HasPrefix(n, "alternatives "):
		return phAlt
	case n == "application":
		return phApp
	case strings.HasPrefix(n, "merge "):
		return phMerge
	}
	return phOther
}

var (
	vertexRE = regexp.MustCompile(`^#(\d+) (.*)$`)
	doneRE   = regexp.MustCompile(`^DONE (\d+(?:\.\d+)?)s$`)
	// A sub-step of a step that ended: "exporting layers 3.8s done",
	// "pushing manifest for REF@sha256:... 0.0s done"; one too short to
	// time says "exporting layers done".
	subDoneRE = regexp.MustCompile(`^(.*?)(?: (\d+(?:\.\d+)?)s)? done$`)
)

// parseDeployPhases reads a plain progress log into phases. The export's
// sub-steps become phases of their own (export layers, unpack into
// containerd, push); a step of another phase that fails ends the parse
// with an error naming its line, so a broken deploy gives no breakdown.
func parseDeployPhases(log string) ([]Phase, error) {
	names := map[string]string{} // vertex number -> name (its first line)
	dur := map[string]float64{}  // vertex -> duration of DONE
	cached := map[string]bool{}  // vertex -> CACHED
	sub := map[string]float64{}  // sub-step phase -> seconds
	subSteps := map[string]int{} // sub-step phase -> count
	subLongest := map[string]float64{}
	var order []string
	for i, line := range strings.Split(log, "\n") {
		m := vertexRE.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			continue
		}
		id, rest := m[1], m[2]
		if _, ok := names[id]; !ok {
			names[id] = rest
			order = append(order, id)
			continue
		}
		switch {
		case rest == "CACHED":
			cached[id] = true
		case strings.HasPrefix(rest, "ERROR"):
			return nil, fmt.Errorf("line %d: step #%s (%s) failed: %s", i+1, id, names[id], rest)
		case doneRE.MatchString(rest):
			d, _ := strconv.ParseFloat(doneRE.FindStringSubmatch(rest)[1], 64)
			dur[id] = d
		case strings.HasPrefix(names[id], "exporting to "):
			sm := subDoneRE.FindStringSubmatch(rest)
			if sm == nil {
				continue
			}
			var ph string
			switch s := sm[1]; {
			case strings.HasPrefix(s, "exporting layers"):
				ph = phExport
			case strings.HasPrefix(s, "unpacking to "):
				ph = phUnpackTo
			case strings.HasPrefix(s, "pushing "):
				ph = phPush
			default:
				continue // manifest, config, naming: 0.0 s each
			}
			d, _ := strconv.ParseFloat(sm[2], 64)
			sub[ph] += d
			subSteps[ph]++
			subLongest[ph] = max(subLongest[ph], d)
		}
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("no progress steps (is it a --progress plain log?)")
	}
	byName := map[string]*Phase{}
	get := func(n string) *Phase {
		if byName[n] == nil {
			byName[n] = &Phase{Name: n}
		}
		return byName[n]
	}
	for _, id := range order {
		name := names[id]
		if strings.HasPrefix(name, "exporting to ") {
			continue // its sub-steps are the phases
		}
		_, done := dur[id]
		if !done && !cached[id] {
			continue // a line that is not a step ("#3 [2dfs cir] scripts" always ends; a bare "#6 ..." does not name one)
		}
		p := get(phaseOf(name))
		p.Steps++
		if cached[id] {
			p.Cached++
		}
		p.Seconds += dur[id]
		p.Longest = max(p.Longest, dur[id])
	}
	for ph, s := range sub {
		p := get(ph)
		p.Steps += subSteps[ph]
		p.Seconds += s
		p.Longest = max(p.Longest, subLongest[ph])
	}
	var out []Phase
	for _, n := range phaseOrder {
		if p := byName[n]; p != nil {
			out = append(out, *p)
		}
	}
	return out, nil
}

// sequential are the phases whose steps run one after the other: the
// export's sub-steps (pushing the layers, then the manifest).
var sequential = map[string]bool{phExport: true, phUnpackTo: true, phPush: true}

// deployPhaseText is one deploy's breakdown as a sentence: a phase of
// one step is its duration (left out when it took no time and was not
// cached), one of many "N steps, longest X s, sum Y s"; cached steps are
// said. It ends with the deploy time no step covers: the deploy's time
// minus each phase's duration or, for a phase of overlapping steps, its
// longest (what that phase takes at least).
func deployPhaseText(d DeployPhases) string {
	var parts []string
	var covered float64
	for _, p := range d.Phases {
		if p.Steps == 0 || p.Steps == 1 && p.Seconds < 0.05 && p.Cached == 0 {
			continue
		}
		var t string
		switch {
		case p.Steps == 1, sequential[p.Name]:
			t = fmt.Sprintf("%s %.1f s", p.Name, p.Seconds)
			covered += p.Seconds
		default:
			t = fmt.Sprintf("%s: %d steps, longest %.1f s, sum %.1f s", p.Name, p.Steps, p.Longest, p.Seconds)
			covered += p.Longest
		}
		if p.Cached == p.Steps && p.Seconds >= 0.05 {
			// A cached step that still takes time is fetching its
			// cached layers, lazily, when the export needs them.
			t += " (all cached; the time is the lazy pull of their layers)"
		} else if p.Cached == p.Steps {
			t += " (all cached)"
		} else if p.Cached > 0 {
			t += fmt.Sprintf(" (%d cached)", p.Cached)
		}
		parts = append(parts, t)
	}
	s := fmt.Sprintf("2dfs deploy %.1f s = %s; no step's time covers: %.1f s", d.Deploy, strings.Join(parts, "; "), max(0, d.Deploy-covered))
	if d.Pull > 0 {
		s += fmt.Sprintf("; then ctr pull %.1f s", d.Pull)
	}
	return s
}

// medianRun is the run whose deploy time is the median (the lower middle
// one of an even count), so a breakdown is one real deploy's.
func medianRun(runs []DeployPhases) (DeployPhases, int) {
	if len(runs) == 0 {
		return DeployPhases{}, -1
	}
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(runs[a].Deploy+runs[a].Pull, runs[b].Deploy+runs[b].Pull)
	})
	i := idx[(len(idx)-1)/2]
	return runs[i], i
}
