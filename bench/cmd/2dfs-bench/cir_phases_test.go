package main

import (
	"os"
	"strings"
	"testing"
)

// phasesOf parses a deploy log captured from a real run of experiment 9
// (testdata/cir-deploy-*.log: the registry round-trip cases of a run on
// 2026-11-30, 77 packages for linux/amd64).
func phasesOf(t *testing.T, file string) map[string]Phase {
	t.Helper()
	dt, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	ph, err := parseDeployPhases(string(dt))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	m := map[string]Phase{}
	var names []string
	for _, p := range ph {
		m[p.Name] = p
		names = append(names, p.Name)
	}
	// In the deploy's order, each phase once.
	for i := 1; i < len(names); i++ {
		if indexOf(phaseOrder, names[i-1]) >= indexOf(phaseOrder, names[i]) {
			t.Errorf("%s: phases out of order: %q", file, names)
		}
	}
	return m
}

func indexOf(v []string, s string) int {
	for i, x := range v {
		if x == s {
			return i
		}
	}
	return -1
}

// (a), empty caches: every package fetched and unpacked, the base pulled,
// apt resolved; the export's sub-steps are phases of their own.
func TestParseDeployPhasesEmptyCaches(t *testing.T) {
	m := phasesOf(t, "cir-deploy-a.log")
	want := map[string]Phase{
		phBase:   {Name: phBase, Steps: 1, Seconds: 2.5, Longest: 2.5},
		phApt:    {Name: phApt, Steps: 1, Seconds: 2.9, Longest: 2.9},
		phAlt:    {Name: phAlt, Steps: 1, Seconds: 1.4, Longest: 1.4},
		phExport: {Name: phExport, Steps: 1, Seconds: 3.8, Longest: 3.8},
		phPush:   {Name: phPush, Steps: 2, Seconds: 0.9, Longest: 0.9}, // layers 0.9 s, manifest 0.0 s
	}
	for n, w := range want {
		if got := m[n]; got.Steps != w.Steps || got.Cached != w.Cached || !near(got.Seconds, w.Seconds) || !near(got.Longest, w.Longest) {
			t.Errorf("%s = %+v, want %+v", n, got, w)
		}
	}
	// 77 .debs: fetched (the longest took 0.7 s) and unpacked (the
	// longest 9.5 s; libopenblas0-pthread's #159 prints "#159 ..." four
	// times before its DONE 9.3s and is counted once), none cached.
	if f := m[phFetch]; f.Steps != 77 || f.Cached != 0 || !near(f.Longest, 0.7) {
		t.Errorf("fetches = %+v", f)
	}
	if u := m[phUnpack]; u.Steps != 77 || u.Cached != 0 || !near(u.Longest, 9.5) || u.Seconds < 300 {
		t.Errorf("unpacks = %+v", u)
	}
	if _, ok := m[phCache]; ok {
		t.Error("no cache was imported in (a)")
	}
}

// (b), b deployed first: 71 of the 77 packages cached, the base cached;
// apt still resolves (3.0 s) and the alternatives run again (1.2 s).
func TestParseDeployPhasesSharedNode(t *testing.T) {
	m := phasesOf(t, "cir-deploy-b.log")
	if f := m[phUnpack]; f.Steps != 77 || f.Cached != 71 {
		t.Errorf("unpacks = %+v, want 77 with 71 cached", f)
	}
	if b := m[phBase]; b.Cached != 1 {
		t.Errorf("base = %+v, want cached", b)
	}
	if a := m[phApt]; !near(a.Seconds, 3.0) {
		t.Errorf("apt resolve = %+v", a)
	}
}

// (c), --cache-from: the cache import is a phase; every unpack is cached,
// and "exporting layers done" (no time printed) counts as 0 s.
func TestParseDeployPhasesCacheFrom(t *testing.T) {
	m := phasesOf(t, "cir-deploy-c.log")
	if c, ok := m[phCache]; !ok || c.Steps != 1 {
		t.Errorf("cache import = %+v", c)
	}
	if u := m[phUnpack]; u.Steps != 77 || u.Cached != 77 {
		t.Errorf("unpacks = %+v, want all 77 cached", u)
	}
	if e := m[phExport]; e.Steps != 1 || e.Seconds != 0 {
		t.Errorf("export = %+v", e)
	}
	if p := m[phPush]; !near(p.Seconds, 0.3) {
		t.Errorf("push = %+v", p)
	}
}

// A real node-side deploy (containerd worker, unpack=true; case (c),
// --cache-from, from a run on 2026-11-30): nothing pushed; the export's
// unpack into containerd is a phase (20.1 s), and the merge, cached,
// still took 4.3 s: its "#162" reopens after the export started, pulling
// the cached layers from the registry cache. The text says so.
func TestParseDeployPhasesNodeSide(t *testing.T) {
	m := phasesOf(t, "cir-deploy-node-c.log")
	if u := m[phUnpackTo]; u.Steps != 1 || !near(u.Seconds, 20.1) {
		t.Errorf("unpack into containerd = %+v", u)
	}
	if _, ok := m[phPush]; ok {
		t.Error("the node-side deploy pushes nothing")
	}
	if mg := m[phMerge]; mg.Steps != 1 || mg.Cached != 1 || !near(mg.Seconds, 4.3) {
		t.Errorf("merge = %+v", mg)
	}
	if u := m[phUnpack]; u.Steps != 77 || u.Cached != 77 {
		t.Errorf("unpacks = %+v", u)
	}
	if c := m[phCache]; c.Steps != 1 {
		t.Errorf("cache import = %+v", c)
	}
	if got := deployPhaseText(DeployPhases{Deploy: 35.3, Phases: []Phase{m[phMerge]}}); !strings.Contains(got, "merge 4.3 s (all cached; the time is the lazy pull of their layers)") {
		t.Errorf("text:\n%s", got)
	}
}

// The node-side export (containerd worker, unpack=true) has its unpack
// into containerd as a phase, and no push; a failed step is an error
// that names it; a log that is not a progress log is an error.
func TestParseDeployPhasesNodeAndErrors(t *testing.T) {
	log := "#1 [2dfs cir] resolve base reg/base@sha256:ab for linux/amd64\n#1 DONE 0.0s\n\n" +
		"#2 [2dfs cir] apt resolve 3 packages for linux/amd64\n#2 DONE 2.8s\n\n" +
		"#3 [2dfs cir] deb libblas3 3.11.0-2\n#3 CACHED\n\n" +
		"#4 exporting to image\n#4 exporting layers 1.5s done\n#4 exporting manifest sha256:aa done\n#4 naming to reg/app:a done\n#4 unpacking to reg/app:a 4.2s done\n#4 DONE 5.8s\n"
	ph, err := parseDeployPhases(log)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Phase{}
	for _, p := range ph {
		m[p.Name] = p
	}
	if u := m[phUnpackTo]; u.Steps != 1 || !near(u.Seconds, 4.2) {
		t.Errorf("unpack into containerd = %+v", u)
	}
	if _, ok := m[phPush]; ok {
		t.Error("the node-side deploy pushes nothing")
	}
	if u := m[phUnpack]; u.Cached != 1 {
		t.Errorf("unpacks = %+v", u)
	}
	_, err = parseDeployPhases("#1 [2dfs cir] apt resolve 1 packages for linux/amd64\n#1 ERROR: process \"/bin/sh\" did not complete successfully: exit code: 100\n")
	if err == nil || !strings.Contains(err.Error(), "line 2: step #1 ([2dfs cir] apt resolve 1 packages for linux/amd64) failed") {
		t.Errorf("failed step error = %v", err)
	}
	if _, err := parseDeployPhases("sha256:abc\n"); err == nil || !strings.Contains(err.Error(), "no progress steps") {
		t.Errorf("empty log error = %v", err)
	}
}

// The text says a one-step phase's time, a many-step phase's count,
// longest and sum, what was cached, and the deploy time no step covers:
// here 35.0 - (2.5 + 2.9 + 0.7 + 9.5 + 1.4 + 0.6 + 0.3 + 3.8 + 0.9) = 12.4 s.
func TestDeployPhaseText(t *testing.T) {
	dt, err := os.ReadFile("testdata/cir-deploy-a.log")
	if err != nil {
		t.Fatal(err)
	}
	ph, err := parseDeployPhases(string(dt))
	if err != nil {
		t.Fatal(err)
	}
	got := deployPhaseText(DeployPhases{Deploy: 35, Pull: 13, Phases: ph})
	for _, want := range []string{"2dfs deploy 35.0 s = ", "base pull and extract 2.5 s", "apt resolve 2.9 s", "package unpacks: 77 steps, longest 9.5 s, sum ",
		"export layers 3.8 s", "no step's time covers: 12.4 s", "then ctr pull 13.0 s"} {
		if !strings.Contains(got, want) {
			t.Errorf("text lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "resolve base and CIR 0.0 s") {
		t.Errorf("a one-step phase of no time is left out:\n%s", got)
	}
	b := phasesOf(t, "cir-deploy-b.log")
	if got := deployPhaseText(DeployPhases{Deploy: 6.6, Phases: []Phase{b[phUnpack]}}); !strings.Contains(got, "(71 cached)") || strings.Contains(got, "ctr pull") {
		t.Errorf("text:\n%s", got)
	}
}

func TestMedianRun(t *testing.T) {
	runs := []DeployPhases{{Deploy: 30, Pull: 10}, {Deploy: 50}, {Deploy: 20, Pull: 1}}
	if d, i := medianRun(runs); i != 0 || d.Deploy != 30 {
		t.Errorf("median of 40, 50, 21 = run %d (%+v), want run 0", i, d)
	}
	if _, i := medianRun(runs[1:]); i != 1 {
		t.Errorf("median of two is the lower: run %d, want 1 (21 s)", i)
	}
	if _, i := medianRun(nil); i != -1 {
		t.Errorf("no runs = %d", i)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// The section gives each CIR case's median run's phases, in the tables'
// order; a case without a breakdown (a log that could not be read) is
// left out, and the results.json round trip keeps them.
func TestCIRPhasesSection(t *testing.T) {
	b := cirResults(t)
	parse := func(f string) []Phase {
		dt, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		ph, err := parseDeployPhases(string(dt))
		if err != nil {
			t.Fatal(err)
		}
		return ph
	}
	b.res.CIR.Phases = map[string][]DeployPhases{
		"cir-a": {{Deploy: 34, Pull: 22, Phases: parse("cir-deploy-a.log")}, {Deploy: 30, Pull: 20, Phases: parse("cir-deploy-a.log")}},
		"cir-c": {{Deploy: 15, Pull: 20, Phases: parse("cir-deploy-c.log")}},
		"cir-b": {{Deploy: 2}}, // no breakdown
	}
	md := b.cirMarkdown()
	for _, want := range []string{
		"- Where each CIR deploy's time went (its median run",
		"  - through the registry, (a) empty caches (run 2 of 2): 2dfs deploy 30.0 s = base pull and extract 2.5 s; apt resolve 2.9 s; package fetches: 77 steps, longest 0.7 s",
		"no step's time covers: 7.4 s; then ctr pull 20.0 s.",
		"  - through the registry, (c) fresh node, --cache-from the registry dependency cache (run 1 of 1): 2dfs deploy 15.0 s = base pull and extract 3.8 s; apt resolve 2.6 s;",
		"package unpacks: 77 steps, longest 0.0 s, sum 0.0 s (all cached)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "(b) b already deployed on the node (run") {
		t.Errorf("a case without a breakdown is left out:\n%s", md)
	}
	if strings.Index(md, "(a) empty caches (run") > strings.Index(md, "(c) fresh node, --cache-from the registry dependency cache (run") {
		t.Error("cases out of the tables' order")
	}
}

// The summary names, from the median run's phases, the largest phases
// until they cover half the deploy; a case without phases says nothing.
func TestBoundBy(t *testing.T) {
	b := cirResults(t)
	b.res.CIR.Phases = map[string][]DeployPhases{
		"cir-b": {{Deploy: 18.2, Pull: 5.9, Phases: []Phase{{Name: phApt, Steps: 1, Seconds: 9.2, Longest: 9.2}, {Name: phAlt, Steps: 1, Seconds: 4.1, Longest: 4.1},
			{Name: phUnpack, Steps: 77, Cached: 71, Seconds: 8.5, Longest: 1.8}}}},
		"node-c": {{Deploy: 35.3, Phases: []Phase{{Name: phBase, Steps: 1, Seconds: 6.6, Longest: 6.6}, {Name: phUnpackTo, Steps: 1, Seconds: 20.1, Longest: 20.1}}}},
	}
	if got := b.boundBy("cir-b"); got != " Its 2dfs deploy (18.2 s in the median run) spent most in apt resolve 9.2 s; the pull after it took 5.9 s." {
		t.Errorf("cir-b: %q", got)
	}
	if got := b.boundBy("node-c"); got != " Its 2dfs deploy (35.3 s in the median run) spent most in export unpack into containerd 20.1 s." {
		t.Errorf("node-c: %q", got)
	}
	if got := b.boundBy("cir-a"); got != "" {
		t.Errorf("no phases: %q", got)
	}
	b.res.CIR.Phases["node-c"][0].Deploy = 60 // 6.6 + 20.1 s do not cover half: both are named
	if got := b.boundBy("node-c"); got != " Its 2dfs deploy (60.0 s in the median run) spent most in export unpack into containerd 20.1 s, base pull and extract 6.6 s." {
		t.Errorf("node-c of 60 s: %q", got)
	}
	if !strings.Contains(b.cirSummary(), "target ≥2×: yes. Its 2dfs deploy (18.2 s in the median run) spent most in apt resolve 9.2 s") {
		t.Errorf("summary:\n%s", b.cirSummary())
	}
}
