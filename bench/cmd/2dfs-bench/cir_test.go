package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestImageSizeTotalAndAddedOver(t *testing.T) {
	base := imageSize{Manifest: 400, Config: 1000, Layers: []layerSize{{"sha256:base", 80_000_000}}}
	fat := imageSize{Manifest: 600, Config: 1500, Layers: []layerSize{{"sha256:base", 80_000_000}, {"sha256:run", 120_000_000}, {"sha256:app", 300}}}
	if got := fat.total(); got != 200_002_400 {
		t.Errorf("total = %d", got)
	}
	// Only the layers the base does not have: RUN and COPY.
	if got := fat.addedOver(base); got != 120_000_300 {
		t.Errorf("addedOver = %d", got)
	}
	if got := base.addedOver(base); got != 0 {
		t.Errorf("base over itself = %d", got)
	}
	// Exported with force-compression, the base's layer has another
	// digest; it is still the base's, by place.
	forced := imageSize{Layers: []layerSize{{"sha256:base-zstd", 70_000_000}, {"sha256:run-zstd", 100_000_000}, {"sha256:app-zstd", 250}}}
	if got := forced.addedOver(base); got != 100_000_250 {
		t.Errorf("forced addedOver = %d", got)
	}
}

// The fat images at equal settings are the same Dockerfile's, exported
// with the CIR's compression, forced; their fat cases pull them, the
// others the default's.
func TestFatEqualSettings(t *testing.T) {
	if fatZstdAttrs != ",compression=zstd,compression-level=1,force-compression=true" {
		t.Errorf("attrs %q", fatZstdAttrs)
	}
	j := &fatJob{platform: "linux/arm64"}
	if j.tag(false) != "arm64" || j.tag(true) != "arm64-zstd" {
		t.Errorf("tags %q %q", j.tag(false), j.tag(true))
	}
	for v, want := range map[string]string{"fat-a": "a/linux/amd64", "fat-a-zstd": "a/linux/amd64 zstd", "fat-b-zstd": "a/linux/amd64 zstd"} {
		if got := fatKey(v, "a", "linux/amd64"); got != want {
			t.Errorf("fatKey(%s) = %q, want %q", v, got, want)
		}
	}
	// Every fat variant has its peer at the other settings.
	for _, v := range cirVariants {
		if strings.HasPrefix(v, "fat-") && !strings.HasSuffix(v, "-zstd") && !slices.Contains(cirVariants, v+"-zstd") {
			t.Errorf("%s has no -zstd peer in %q", v, cirVariants)
		}
	}
	if cirDeployLog("cir-b", 2) != "8-cir-b-r2-deploy" || cirDeployLog("node-c-lock", 0) != "9-node-c-lock-r0-deploy" {
		t.Error("deploy log names changed: the phases are read from them")
	}
}

func TestAptFetched(t *testing.T) {
	log := "#6 1.552 Fetched 15.0 MB in 1s (10.3 MB/s)\n#6 9.1 Reading package lists...\n#6 3.304 Fetched 8,793 kB in 3s (2,931 kB/s)\nFetched 512 B in 0s\n"
	got := aptFetched(log)
	want := []float64{15e6, 8793e3, 512}
	if len(got) != len(want) {
		t.Fatalf("aptFetched = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("aptFetched[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if got := aptFetched("no fetch here"); len(got) != 0 {
		t.Errorf("aptFetched of nothing = %v", got)
	}
}

// The archive proxy counts the bytes of what it fetches for a client that
// uses it as its HTTP proxy, and the number of fetches.
func TestArchiveProxyCounts(t *testing.T) {
	body := bytes.Repeat([]byte("deb"), 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	p, err := newArchiveProxy()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	pu, _ := url.Parse("http://" + p.ln.Addr().String())
	// Go never proxies loopback through ProxyFromEnvironment; a fixed
	// proxy URL does.
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Second}
	for range 2 {
		resp, err := c.Get(srv.URL + "/pool/main/x.deb")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, body) {
			t.Fatalf("body through the proxy: %d bytes, want %d", len(got), len(body))
		}
	}
	if n := p.n.Load(); n != int64(2*len(body)) {
		t.Errorf("counted %d bytes, want %d", n, 2*len(body))
	}
	if q := p.requests.Load(); q != 2 {
		t.Errorf("counted %d requests, want 2", q)
	}
}

// The registry counter counts bytes as they flow: a client that keeps its
// connection open (buildkitd does) is counted before it closes it.
func TestCounterCountsOpenConnections(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 50_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	c, err := newCounter(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.ln.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + c.addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // back to the idle pool: the connection stays open
	deadline := time.Now().Add(5 * time.Second)
	for c.n.Load() < int64(len(body)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := c.n.Load(); n < int64(len(body)) {
		t.Errorf("counted %d bytes with the connection open, want at least the body's %d", n, len(body))
	}
}

func TestParseExperiments(t *testing.T) {
	got, err := parseExperiments("1,8,9")
	if err != nil || !got[1] || !got[8] || !got[9] || len(got) != 3 {
		t.Errorf("parseExperiments(1,8,9) = %v, %v", got, err)
	}
	if _, err := parseExperiments("10"); err == nil || !strings.Contains(err.Error(), `"10" is not 1..9`) {
		t.Errorf("parseExperiments(10) error = %v", err)
	}
}

func TestFatDockerfile(t *testing.T) {
	df := fatDockerfile("reg/debian:py", cirApps[0])
	for _, want := range []string{"FROM reg/debian:py\n", "apt-get install -y --no-install-recommends python3-numpy python3-pandas python3-sklearn", "COPY main.py /app/main.py"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df)
		}
	}
}

// cirResults is a run of experiment 9 with made-up figures of the shape a
// real run has.
func cirResults(t *testing.T) *bench {
	t.Helper()
	b := &bench{res: &Results{Started: "2026-11-30T12:00:00Z", Runs: 2, Machine: "2 cores", CIR: &CIRInfo{
		Apps: map[string][]string{"a": cirApps[0].apt, "b": cirApps[1].apt}, Closure: map[string]int{"a/linux/amd64": 77, "a/linux/arm64": 78, "b/linux/amd64": 70}, Shared: 68,
		BaseMB: map[string]float64{"linux/amd64": 84.8, "linux/arm64": 83}, AssembledMB: map[string]float64{}, AssembledLayers: map[string]int{}, FatLayers: map[string]int{},
		FatBuildSeconds: map[string]float64{"a/linux/amd64": 110}, AptIndexMB: map[string]float64{"linux/amd64": 15}, FatDebsMB: map[string]float64{}, DeploySeconds: map[string]float64{}, Checks: map[string]string{},
	}}, started: time.Now()}
	cirImg := imageSize{Manifest: 400, Config: 1249, Layers: []layerSize{{"sha256:app", 147}}}
	base := map[string]imageSize{
		"linux/amd64": {Manifest: 400, Config: 600, Layers: []layerSize{{"sha256:b1", 84_800_000}}},
		"linux/arm64": {Manifest: 400, Config: 600, Layers: []layerSize{{"sha256:b2", 83_000_000}}},
	}
	fat := map[string]imageSize{
		"linux/amd64": {Manifest: 600, Config: 1100, Layers: []layerSize{{"sha256:b1", 84_800_000}, {"sha256:r1", 150_000_000}, {"sha256:c1", 400}}},
		"linux/arm64": {Manifest: 600, Config: 1100, Layers: []layerSize{{"sha256:b2", 83_000_000}, {"sha256:r2", 140_000_000}, {"sha256:c2", 400}}},
	}
	// At equal settings the base's layer is recompressed too: another
	// digest, the same place.
	fatZstd := map[string]imageSize{
		"linux/amd64": {Manifest: 600, Config: 1100, Layers: []layerSize{{"sha256:z1", 70_000_000}, {"sha256:rz1", 120_000_000}, {"sha256:cz1", 400}}},
		"linux/arm64": {Manifest: 600, Config: 1100, Layers: []layerSize{{"sha256:z2", 69_000_000}, {"sha256:rz2", 110_000_000}, {"sha256:cz2", 400}}},
	}
	b.cirSizeRows(cirImg, fat, fatZstd, base)
	b.cirDeployRows(map[string][]cirCase{
		"cir-a":      {{deploy: 30, pull: 20, regMB: 290, archiveMB: 130, debs: 77}, {deploy: 34, pull: 22, regMB: 290, archiveMB: 130, debs: 77}},
		"fat-a":      {{pull: 10, regMB: 235}, {pull: 12, regMB: 235}},
		"fat-a-zstd": {{pull: 7, regMB: 190}, {pull: 9, regMB: 190}},
		"cir-b":      {{deploy: 2, pull: 1, regMB: 20, archiveMB: 5, debs: 9}, {deploy: 3, pull: 1, regMB: 20, archiveMB: 5, debs: 9}},
		"fat-b":      {{pull: 8, regMB: 150}, {pull: 9, regMB: 150}},
		"fat-b-zstd": {{pull: 5, regMB: 120}, {pull: 6, regMB: 120}},
		"cir-c":      {{deploy: 15, pull: 20, regMB: 480}, {deploy: 16, pull: 22, regMB: 480}},
	}, b.res.CIR)
	return b
}

// The size rows judge the 5 % target against one fat image, the sum and
// fat minus base; the deploy rows are speedups per run, with the ≥2×
// target on (b) and (c) and none on (a).
func TestCIRRows(t *testing.T) {
	b := cirResults(t)
	size := b.row("cir/size/linux/amd64")
	if size == nil || size.Met == nil || !*size.Met || size.RatioOfMedians > 1e-5 || size.Ours[0] != 0.001796 || size.Settings != Defaults {
		t.Fatalf("size row = %+v", size)
	}
	if z := b.row("cir/size-zstd/linux/amd64"); z == nil || z.PeerVals[0] != 190.0021 || z.Settings != Equal {
		t.Fatalf("size row at equal settings = %+v", z)
	}
	// By place: the recompressed base is not counted as added.
	if z := b.row("cir/added-zstd/linux/amd64"); z == nil || z.PeerVals[0] != 120.0004 {
		t.Fatalf("added row at equal settings = %+v", z)
	}
	added := b.row("cir/added/linux/amd64")
	if added == nil || added.PeerVals[0] != 150.0004 {
		t.Fatalf("added row = %+v", added)
	}
	if sum := b.row("cir/size/sum"); sum == nil || sum.PeerVals[0] != fat2(b) {
		t.Fatalf("sum row = %+v", sum)
	}
	a := b.row("cir/deploy/a")
	if a == nil || a.Met != nil || a.Ratios[0] != 10.0/50 || a.RatioKind != Speedup {
		t.Fatalf("deploy a = %+v", a)
	}
	bb := b.row("cir/deploy/b")
	if bb == nil || bb.Met == nil || !*bb.Met || bb.Ratios[0] != 8.0/3 {
		t.Fatalf("deploy b = %+v", bb)
	}
	c := b.row("cir/deploy/c")
	if c == nil || c.Met == nil || *c.Met {
		t.Fatalf("deploy c (10 s against 35 s) must miss ≥2×: %+v", c)
	}
	// At equal settings (b) pulls the zstd fat image of a onto a node
	// holding the zstd fat image of b: 5 and 6 s against 3 and 4 s.
	bz := b.row("cir/deploy-zstd/b")
	if bz == nil || bz.Settings != Equal || bz.Ratios[0] != 5.0/3 || bz.Met == nil || *bz.Met || bz.TargetMin != 2 {
		t.Fatalf("deploy b at equal settings = %+v", bz)
	}
	if r := b.row("cir/deploy-zstd/a"); r == nil || r.PeerVals[1] != 9 || r.Target != "" {
		t.Fatalf("deploy a at equal settings = %+v", r)
	}
	if r := b.row("cir/registry-zstd/c"); r == nil || r.PeerVals[0] != 190 || r.Ours[0] != 480 {
		t.Fatalf("registry c at equal settings = %+v", r)
	}
	if r := b.row("cir/registry/b"); r == nil || r.Ours[0] != 20 || r.PeerVals[0] != 150 {
		t.Fatalf("registry b = %+v", r)
	}
}

func fat2(b *bench) float64 {
	return b.row("cir/size/linux/amd64").PeerVals[0] + b.row("cir/size/linux/arm64").PeerVals[0]
}

// A -cir run renders its own sections and leaves the default run's as they
// are; the default run leaves the CIR's.
func TestCIRSections(t *testing.T) {
	b := cirResults(t)
	if !b.onlyCIR() {
		t.Fatal("a run of experiment 9 alone must be onlyCIR")
	}
	secs := b.sections()
	if _, ok := secs["results"]; ok {
		t.Error("a -cir run must not regenerate the default run's results")
	}
	doc := "# x\n<!-- bench:results -->\nold results\n<!-- /bench:results -->\n<!-- bench:cir -->\nold cir\n<!-- /bench:cir -->\n<!-- bench:cir-readme -->\n<!-- /bench:cir-readme -->\n"
	out, n, err := replaceSections(doc, secs)
	if err != nil || n != 2 {
		t.Fatalf("replaceSections: %d, %v", n, err)
	}
	if !strings.Contains(out, "old results") || strings.Contains(out, "old cir") {
		t.Errorf("sections:\n%s", out)
	}
	for _, want := range []string{"| linux/amd64 | gzip (default) | 1796 B | 235 MB | 0.00076 % (yes) |", "| linux/amd64 | zstd -1 (equal) | 1796 B | 190 MB | 0.00095 % (yes) | 120 MB |",
		// Equal settings first, then the default, each judged.
		"| (b) b already deployed on the node | 3.50 s (3.00–4.00) | 5.50 s (5.00–6.00) | 1.57× (per run 1.50–1.67) | ≥2× | **no** | 8.50 s (8.00–9.00) | 2.43× (per run 2.25–2.67) | ≥2× | yes | 20.0 MB / 120 MB / 150 MB | 5.00 MB |",
		"| (a) empty caches | 53.0 s (50.0–56.0) | 8.00 s (7.00–9.00) | 0.151× (per run 0.140–0.161) |  |  | 11.0 s (10.0–12.0) |",
		"77 packages", "it has 68 of a's 77",
		"**(b)** through the registry: 3.50 s (3.00–4.00) against 5.50 s (5.00–6.00) for the fat pull at equal settings (zstd -1), speedup 1.57× (per run 1.50–1.67), target ≥2×: no; against 8.50 s (8.00–9.00) for the fat pull at the default (gzip), speedup 2.43× (per run 2.25–2.67), target ≥2×: yes."} {
		if !strings.Contains(out, want) {
			t.Errorf("CIR section lacks %q:\n%s", want, out)
		}
	}
	if readme := secs["cir-readme"]; !strings.Contains(readme, "| size, both platforms | 1796 B | 369 MB | 0.00049 % (yes) | 458 MB | 0.00039 % (yes) |") ||
		!strings.Contains(readme, "| deploy, app sharing its dependencies already on the node (deploy --push + pull) | 3.50 s (3.00–4.00) | 5.50 s (5.00–6.00) | speedup 1.57× (per run 1.50–1.67) | 8.50 s (8.00–9.00) | speedup 2.43×") {
		t.Errorf("README table:\n%s", readme)
	}
	if _, _, err := replaceSections("<!-- bench:nosuch -->\n<!-- /bench:nosuch -->\n", secs); err == nil || !strings.Contains(err.Error(), `unknown section "nosuch"`) {
		t.Errorf("unknown section error = %v", err)
	}
}

func TestFmtSmallValues(t *testing.T) {
	if got := fmtNum(0.0000076); got != "7.6e-06" {
		t.Errorf("fmtNum tiny = %q", got)
	}
	if got := fmtNum(0.5); got != "0.500" {
		t.Errorf("fmtNum(0.5) = %q", got)
	}
	if got := fmtPct(0.0000076); got != "0.00076 %" {
		t.Errorf("fmtPct = %q", got)
	}
	if got := fmtBytes([]float64{0.001796}); got != "1796 B" {
		t.Errorf("fmtBytes = %q", got)
	}
}

func TestLastStepLine(t *testing.T) {
	out := "#5 [2/2] RUN python3 /app/main.py\n#5 0.226 exec /bin/sh: no such file or directory\n#5 ERROR: process did not complete\n"
	if got := lastStepLine(out); got != "exec /bin/sh: no such file or directory" {
		t.Errorf("lastStepLine = %q", got)
	}
	if got := lastStepLine("nothing"); got != "failed" {
		t.Errorf("lastStepLine of nothing = %q", got)
	}
}
