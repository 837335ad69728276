package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/tdfs-kit/tdfs/direct/layer"
)

// vDirect is `2dfs build --engine direct`: the same field, read, tarred,
// compressed (zstd level 1, like vTDFS) and pushed in one pass per
// allotment, with no buildkitd. It keeps a stat cache under
// $XDG_CACHE_HOME, which main points into the scratch folder.
const vDirect = "2dfs direct"

// racyPause is how long a direct build waits after its sources were
// written: the stat cache does not record a file changed within 100 ms of
// the scan (direct/cache.go's racyWindow), and a split written just before
// a cold build would then be re-read by the next build, which would make
// the no-op and re-build figures pay for the benchmark's own timing.
const racyPause = 200 * time.Millisecond

// directWorkers is the direct engine's worker count (cmd/2dfs/direct.go);
// the floor uploads as many blobs at once.
func directWorkers() int { return min(max(runtime.NumCPU(), 2), 8) }

// buildDirect builds and pushes REF from DIR with the direct engine.
// It runs through rssWrap, which records the 2dfs process's peak memory
// in b.lastRSS.
func (b *bench) buildDirect(dir, ref, base, log string) (string, time.Duration, error) {
	time.Sleep(racyPause)
	exe, err := os.Executable()
	if err != nil {
		return "", 0, err
	}
	rssFile := filepath.Join(b.work, "direct.rss")
	out, d, err := b.cmd(log, exe, rssWrapArg, rssFile, filepath.Join(b.bin, "2dfs"), "build", "--engine", "direct", "--progress", "plain",
		"--compression", "zstd", "--compression-level", strconv.Itoa(directLevel),
		"--build-context", "base=docker-image://"+base, "-t", ref, "--push", dir)
	if err != nil {
		return out, d, err
	}
	dt, err := os.ReadFile(rssFile)
	if err != nil {
		return out, d, err
	}
	kib, err := strconv.ParseInt(string(dt), 10, 64)
	if err != nil {
		return out, d, fmt.Errorf("%s: %w", rssFile, err)
	}
	b.lastRSS.Store(kib)
	return out, d, nil
}

// rssWrapArg makes the benchmark binary run a command and write its peak
// memory (see rssWrap).
const rssWrapArg = "rss-wrap"

// rssWrap runs ARGS and writes its maximum resident set size (KiB) to
// FILE, returning its exit code. It is a process of its own because Linux
// counts into a child's maxrss the memory of the process it was forked
// from, up to its exec: run straight from the benchmark, which holds the
// splits' bytes (2 GiB at 2 × 1 GiB), 2dfs was charged with them. This
// wrapper is small, so what it reports is the 2dfs process's own peak.
func rssWrap(file string, args []string) int {
	c := exec.Command(args[0], args[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := c.Run()
	if c.ProcessState == nil {
		fmt.Fprintf(os.Stderr, "rss-wrap: %v\n", err)
		return 1
	}
	ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		fmt.Fprintln(os.Stderr, "rss-wrap: no rusage on this system")
		return 1
	}
	if werr := os.WriteFile(file, []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644); werr != nil {
		fmt.Fprintf(os.Stderr, "rss-wrap: %v\n", werr)
		return 1
	}
	return c.ProcessState.ExitCode()
}

var directReadLine = regexp.MustCompile(`(?m)^\[2dfs\] direct: (\d+) allotments read, (\d+) unread`)

// directReads is how many allotments a direct build read and how many it
// took from the stat cache or the registry, from its last output line. A
// log without that line is an error: counting it as "nothing read" would
// make a no-op look cheaper than it was.
func directReads(out string) (read, unread int, err error) {
	m := directReadLine.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no %q line in the direct engine's output (has its log format changed?)", "[2dfs] direct: N allotments read, M unread")
	}
	read, _ = strconv.Atoi(m[1])
	unread, _ = strconv.Atoi(m[2])
	return read, unread, nil
}

// fieldLayers are the layers of image REF that are not layers of BASE:
// the allotments the build wrote, as the registry holds them.
func fieldLayers(ctx context.Context, ref, base string) ([]remoteBlob, error) {
	digests := func(r string) ([]remoteBlob, error) {
		n, err := name.ParseReference(r)
		if err != nil {
			return nil, err
		}
		img, err := remote.Image(n, remote.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		var out []remoteBlob
		for _, l := range m.Layers {
			out = append(out, remoteBlob{repo: n.Context().RepositoryStr(), digest: l.Digest.String(), size: l.Size})
		}
		return out, nil
	}
	all, err := digests(ref)
	if err != nil {
		return nil, err
	}
	bl, err := digests(base)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(l remoteBlob) bool {
		return slices.ContainsFunc(bl, func(x remoteBlob) bool { return x.digest == l.digest })
	}), nil
}

type remoteBlob struct {
	repo, digest string
	size         int64
}

// floorBlob is one compressed layer on disk, to be uploaded as it is, and
// for the compressing floor the same layer uncompressed.
type floorBlob struct {
	digest string
	size   int64
	path   string
	tar    string
}

// untar writes each blob's uncompressed layer next to it (untimed), for
// the compressing floor.
func untar(blobs []floorBlob) ([]floorBlob, error) {
	out := slices.Clone(blobs)
	for i, bl := range out {
		f, err := os.Open(bl.path)
		if err != nil {
			return nil, err
		}
		zr, err := zstd.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		out[i].tar = bl.path + ".tar"
		t, err := os.Create(out[i].tar)
		if err == nil {
			_, err = io.Copy(t, zr)
			if cerr := t.Close(); err == nil {
				err = cerr
			}
		}
		zr.Close()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", bl.digest, err)
		}
	}
	return out, nil
}

// fetchBlobs copies blobs from the registry into DIR (untimed: the floor
// times only the upload).
func fetchBlobs(ctx context.Context, registry, dir string, blobs []remoteBlob) ([]floorBlob, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []floorBlob
	for _, bl := range blobs {
		path := filepath.Join(dir, bl.digest[len("sha256:"):])
		out = append(out, floorBlob{digest: bl.digest, size: bl.size, path: path})
		if st, err := os.Stat(path); err == nil && st.Size() == bl.size {
			continue
		}
		u := "http://" + registry + "/v2/" + bl.repo + "/blobs/" + bl.digest
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		f, err := os.Create(path)
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// uploadBlobs is the floor of any push: every blob sent to REPO on the
// registry at HOST (plain HTTP) as one monolithic upload (POST, then PUT
// with the digest and the whole body), up to workers at once, the way the
// direct engine's pushes overlap. It returns the wall time of all of them.
//
// With a compression set, it is the floor of a push that compresses: each
// blob is made while it is sent, from its uncompressed layer (bl.tar)
// through the same compressor at the same level, hashing both streams as
// any push of a new layer must (the blob's digest names it, the diff_id
// goes into the config); only the digest is known before (the PUT names
// it), and a compressed stream that is not the blob fails the upload.
func uploadBlobs(ctx context.Context, host, repo string, blobs []floorBlob, workers int, comp *layer.Compression) (time.Duration, error) {
	start := time.Now()
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(workers)
	for _, bl := range blobs {
		eg.Go(func() error { return uploadBlob(ctx, host, repo, bl, comp) })
	}
	err := eg.Wait()
	return time.Since(start), err
}

// compressingBody compresses the layer at path while it is sent, and
// fails at the end unless the stream is the blob want. Like the direct
// engine's upload body it gives net/http a WriteTo, so each compressed
// block goes into the request as one chunk with no pipe in between: the
// floor is no slower than the best the engine can do.
type compressingBody struct {
	ctx        context.Context
	path, want string
	comp       layer.Compression
	pr         *io.PipeReader
}

func (b *compressingBody) pass(w io.Writer) error {
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := layer.Recompress(b.ctx, w, f, b.comp)
	if err == nil && got.Digest.String() != b.want {
		err = fmt.Errorf("compressing %s again made %s: not the same settings", b.want, got.Digest)
	}
	return err
}

func (b *compressingBody) WriteTo(w io.Writer) (int64, error) {
	if b.pr != nil {
		return io.Copy(w, struct{ io.Reader }{b.pr})
	}
	b.pr, _ = io.Pipe()
	b.pr.Close() // written once
	cw := &countingWriter{w: w}
	err := b.pass(cw)
	return cw.n, err
}

func (b *compressingBody) Read(p []byte) (int, error) {
	if b.pr == nil {
		pr, pw := io.Pipe()
		b.pr = pr
		go func() { pw.CloseWithError(b.pass(pw)) }()
	}
	return b.pr.Read(p)
}

func (b *compressingBody) Close() error {
	if b.pr != nil {
		return b.pr.Close()
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// chunkClient sends the compressing floor's chunked bodies with the direct
// engine's write buffer (direct/engine.go, uploadTransport): one socket
// write per compressed block.
var chunkClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.WriteBufferSize = 256 << 10
	return &http.Client{Transport: t}
}()

func uploadBlob(ctx context.Context, host, repo string, bl floorBlob, comp *layer.Compression) error {
	base := &url.URL{Scheme: "http", Host: host}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.JoinPath("v2", repo, "blobs", "uploads").String()+"/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s blob upload: %s", repo, resp.Status)
	}
	loc, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("POST %s blob upload: Location: %w", repo, err)
	}
	q := loc.Query()
	q.Set("digest", bl.digest)
	loc.RawQuery = q.Encode()
	var body io.ReadCloser
	client, size := http.DefaultClient, bl.size
	if comp != nil {
		// Chunked (no length): net/http hides a body's WriteTo behind a
		// LimitReader when the length is set.
		body, client, size = &compressingBody{ctx: ctx, path: bl.tar, want: bl.digest, comp: *comp}, chunkClient, 0
	} else if body, err = os.Open(bl.path); err != nil {
		return err
	}
	defer body.Close()
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), body)
	if err != nil {
		return err
	}
	put.ContentLength = size
	put.Header.Set("Content-Type", "application/octet-stream")
	resp, err = client.Do(put)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT %s blob %s: %s", repo, bl.digest, resp.Status)
	}
	return nil
}

// floor uploads the allotment layers of REF (built on BASE) to a fresh
// repository of the same registry and returns the seconds it took, then
// the seconds the compressing floor took (see uploadBlobs); they run in
// turn, which first alternating by run.
func (b *bench) floor(ref, base string, run int) (float64, float64, error) {
	layers, err := fieldLayers(b.ctx, ref, base)
	if err != nil {
		return 0, 0, err
	}
	if len(layers) != b.splits {
		return 0, 0, fmt.Errorf("%s has %d layers besides its base's, want %d (one per split)", ref, len(layers), b.splits)
	}
	dir := filepath.Join(b.work, "floor")
	defer os.RemoveAll(dir)
	blobs, err := fetchBlobs(b.ctx, b.registry, dir, layers)
	if err != nil {
		return 0, 0, err
	}
	if blobs, err = untar(blobs); err != nil {
		return 0, 0, err
	}
	comp, err := layer.ParseCompression("zstd", directLevel)
	if err != nil {
		return 0, 0, err
	}
	var raw, compressing time.Duration
	for i := range 2 {
		if (i+run)%2 == 0 {
			raw, err = uploadBlobs(b.ctx, b.registry, fmt.Sprintf("bench/floor-%x-r%d", b.seed&0xffffff, run), blobs, directWorkers(), nil)
		} else {
			compressing, err = uploadBlobs(b.ctx, b.registry, fmt.Sprintf("bench/floor-zstd-%x-r%d", b.seed&0xffffff, run), blobs, directWorkers(), &comp)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return raw.Seconds(), compressing.Seconds(), nil
}

// directLevel is the zstd level of the direct engine's builds here.
const directLevel = 1

// directCold, after a direct cold build of REF and its no-op, checks from
// their logs that the cold build read every split and the no-op none, and
// measures the floor: the same compressed layers uploaded as raw blobs.
func (b *bench) directCold(ref, base string, run int, log string, floors map[string][]float64, reads *[]string) error {
	var got []string
	for i, l := range []string{log, log + "-noop"} {
		path := filepath.Join(b.out, "logs", l+".log")
		dt, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		read, unread, err := directReads(string(dt))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if want := []int{b.splits, 0}[i]; read != want {
			return fmt.Errorf("%s: the direct engine read %d allotments, want %d (%d unread)", path, read, want, unread)
		}
		got = append(got, fmt.Sprintf("%d read", read))
	}
	*reads = append(*reads, got...)
	s, sz, err := b.floor(ref, base, run)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	floors["floor"] = append(floors["floor"], s)
	floors["floor-zstd"] = append(floors["floor-zstd"], sz)
	b.logf("exp 1 run %d: registry floor %.2fs, compressing %.2fs", run+1, s, sz)
	return nil
}

// Peers of the direct engine's rows.
const (
	vFloor     = "registry floor (raw blob upload)"
	vFloorZstd = "registry floor compressing (zstd -1, both digests, while uploading)"
)

// directColdRows are experiment 1's direct-engine figures: cold against
// COPY --link and the BuildKit engine at equal compression, against the
// registry floor, and the no-op.
func (b *bench) directColdRows(times, noop, floors map[string][]float64, reads []string, rss []float64) {
	if len(times[vDirect]) == 0 {
		return
	}
	pinned := ""
	if b.pinned != nil {
		pinned = "; pinned: " + b.pinned.String()
	}
	for _, r := range directRows(times, noop, floors) {
		if r.Peer != "" && len(r.PeerVals) == 0 {
			continue // a peer this run did not build (-direct-only)
		}
		if r.Key == "cold/direct-floor" {
			r.Detail = fmt.Sprintf("the %d allotment layers of each direct build, uploaded again to a new repository of the same registry, %d at a time (POST, then one PUT with the digest); the registry already holds them under the build's repository, so it skips only the final move of each blob: it still receives, hashes and writes every byte", b.splits, directWorkers())
		}
		if r.Key == "cold/direct-floor-zstd" {
			r.Detail = fmt.Sprintf("the same uploads, each blob compressed again while it is sent from its uncompressed layer (decompressed untimed) with the direct engine's compressor at zstd level %d, hashing the layer and the blob on the way (a push of a new layer must: the digest names the blob, the diff_id goes into the config); only the tar writing from the files, the protocol around the blobs (config, manifest, checks) and the process are left out; the two floors run in turn after each direct build, which first alternating by run", directLevel)
		}
		if r.Key == "noop/direct" {
			r.Detail = "allotments the direct engine read per run, cold then no-op: " + fmt.Sprint(reads)
		}
		if strings.HasPrefix(r.Key, "cold/direct-floor") {
			r.Detail += pinned
		}
		b.add(r)
	}
	if len(rss) > 0 {
		b.add(&Row{Exp: 1, Key: "cold/direct-rss", Name: "cold build, 2dfs direct engine, peak memory of the 2dfs process", Unit: "MB", Ours: rss,
			Detail: fmt.Sprintf("maximum resident set size from the process's rusage, with %d MiB splits and %d workers; it stays bounded by the workers' buffers, not the split size", b.splitMiB, directWorkers())})
	}
}

// directRows builds the rows of directColdRows from the measured times (a
// pure function, for the tests).
func directRows(times, noop, floors map[string][]float64) []*Row {
	noopOK := len(noop[vDirect]) > 0 && median(noop[vDirect]) < 0.1
	return []*Row{
		{Exp: 1, Key: "cold/direct-link", Name: "cold build, 2dfs direct engine vs COPY --link", Settings: Equal, Unit: "s", RatioKind: Speedup,
			Ours: times[vDirect], Peer: vLinkZ, PeerVals: times[vLinkZ], Target: "≥2.5×", TargetMin: 2.5},
		{Exp: 1, Key: "cold/direct-buildkit", Name: "cold build, 2dfs direct engine vs BuildKit engine", Settings: Equal, Unit: "s", RatioKind: Speedup,
			Ours: times[vDirect], Peer: vTDFS + " (BuildKit engine)", PeerVals: times[vTDFS]},
		{Exp: 1, Key: "cold/direct-floor", Name: "cold build, 2dfs direct engine vs the registry receiving the same layers", Settings: Equal, Unit: "s", RatioKind: Relative,
			Ours: times[vDirect], Peer: vFloor, PeerVals: floors["floor"], Target: "≤1.3×", TargetMax: 1.3},
		{Exp: 1, Key: "cold/direct-floor-zstd", Name: "cold build, 2dfs direct engine vs the registry receiving the same layers compressed on the way", Settings: Equal, Unit: "s", RatioKind: Relative,
			Ours: times[vDirect], Peer: vFloorZstd, PeerVals: floors["floor-zstd"], Target: "≤1.3×", TargetMax: 1.3},
		{Exp: 1, Key: "noop/direct", Name: "no-op re-build, 2dfs direct engine vs BuildKit engine", Settings: Equal, Unit: "s", RatioKind: Speedup,
			Ours: noop[vDirect], Peer: vTDFS + " (BuildKit engine)", PeerVals: noop[vTDFS]},
		{Exp: 1, Key: "noop/direct-time", Name: "no-op re-build, 2dfs direct engine, median under 100 ms", Unit: "s",
			Ours: noop[vDirect], Target: "<0.1 s", Met: &noopOK},
	}
}

// addDirectPeers adds the direct engine's rows of one re-build or base
// change figure: against COPY --link and the BuildKit engine, both at
// equal compression.
func (b *bench) addDirectPeers(exp int, key, name string, times map[string][]float64) {
	b.add(&Row{Exp: exp, Key: key + "/direct-link", Name: name + ", 2dfs direct engine vs COPY --link", Settings: Equal, Unit: "s",
		Ours: times[vDirect], Peer: vLinkZ, PeerVals: times[vLinkZ], RatioKind: Speedup})
	b.add(&Row{Exp: exp, Key: key + "/direct-buildkit", Name: name + ", 2dfs direct engine vs BuildKit engine", Settings: Equal, Unit: "s",
		Ours: times[vDirect], Peer: vTDFS + " (BuildKit engine)", PeerVals: times[vTDFS], RatioKind: Speedup})
}
