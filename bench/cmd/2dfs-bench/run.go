package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// Variants of a build: ours, and the Dockerfile peers at BuildKit's
// default compression (gzip) and at ours (zstd level 1), each on its own
// buildkitd.
const (
	vTDFS  = "2dfs"
	vCopy  = "COPY"
	vLink  = "COPY --link"
	vCopyZ = "COPY zstd -1"
	vLinkZ = "COPY --link zstd -1"
)

var buildVariants = []string{vTDFS, vDirect, vCopy, vLink, vCopyZ, vLinkZ}

// zstd1 are the exporter attributes of the 2dfs CLI's default layer
// compression, given to the peers' equal-settings variants: exactly what
// `2dfs build` sets (no force-compression: the base image's layers stay
// the registry's gzip blobs on both sides).
var zstd1 = []string{"compression=zstd", "compression-level=1"}

// cmd runs a command, saving its combined output under out/logs/LOG.log,
// and returns the output and the wall time.
func (b *bench) cmd(log string, name string, args ...string) (string, time.Duration, error) {
	c := exec.CommandContext(b.ctx, name, args...)
	var buf bytes.Buffer
	c.Stdout, c.Stderr = &buf, &buf
	start := time.Now()
	err := c.Run()
	d := time.Since(start)
	if log != "" {
		_ = os.WriteFile(filepath.Join(b.out, "logs", log+".log"), buf.Bytes(), 0o644)
	}
	if err != nil {
		out := buf.String()
		if len(out) > 4000 {
			out = "..." + out[len(out)-4000:]
		}
		return buf.String(), d, fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return buf.String(), d, nil
}

func (b *bench) buildctl(addr string, args ...string) []string {
	return append([]string{"--addr", addr}, args...)
}

// startBuilders gives each variant its own buildkitd (2dfs the main one).
// Sharing one would make them pay for each other's context transfers:
// BuildKit keeps one incremental copy of a local context per shared key,
// and buildctl sets no SolveOpt.SharedKey, so every buildctl context on a
// daemon has the same key ("context:context:") and each build of another
// folder re-sends all of its files. (`2dfs build` sets a key per folder,
// but the Dockerfile variants are built with buildctl; their own daemons
// also keep one variant's cache and compressed blobs out of another's.)
func (b *bench) startBuilders() error {
	b.builders = map[string]string{vTDFS: b.buildkit}
	// Base images are built on one more, so they do not evict the
	// field's context either.
	for _, v := range []string{vCopy, vLink, vCopyZ, vLinkZ, "base"} {
		addr, err := b.env.Buildkitd("bench-" + slugOf(v))
		if err != nil {
			return err
		}
		b.builders[v] = addr
	}
	return nil
}

// prune empties the cache of a variant's BuildKit.
func (b *bench) prune(variant string) error {
	_, _, err := b.cmd("", filepath.Join(b.tools, "buildctl"), b.buildctl(b.builders[variant], "prune", "--all")...)
	return err
}

// newBase makes a new base image (busybox plus a version file, so every
// base differs) and returns its reference.
func (b *bench) newBase() (string, error) {
	b.baseN++
	ref := fmt.Sprintf("%s/bench/base:b%d", b.registry, b.baseN)
	return ref, testenv.BaseImage(b.root, b.builders["base"], ref, "", fmt.Sprintf("bench-%d-%d", b.seed, b.baseN))
}

// build builds and pushes REF from the context DIR with one variant on BASE.
// extra are exporter attributes (compression=zstd, ...).
func (b *bench) build(variant, dir, ref, base, log string, extra ...string) (time.Duration, Phases, error) {
	output := "type=image,name=" + ref + ",push=true"
	if len(extra) > 0 {
		output += "," + strings.Join(extra, ",")
	}
	var out string
	var d time.Duration
	var err error
	switch variant {
	case vTDFS:
		out, d, err = b.cmd(log, filepath.Join(b.bin, "2dfs"), "build", "--engine", "buildkit", "--addr", b.builders[vTDFS], "--progress", "plain",
			"--build-context", "base=docker-image://"+base, "--output", output, dir)
	case vDirect:
		out, d, err = b.buildDirect(dir, ref, base, log)
	case vCopy, vLink, vCopyZ, vLinkZ:
		file := "Dockerfile"
		if variant == vLink || variant == vLinkZ {
			file = "Dockerfile.link"
		}
		if variant == vCopyZ || variant == vLinkZ {
			output += "," + strings.Join(zstd1, ",")
		}
		out, d, err = b.cmd(log, filepath.Join(b.tools, "buildctl"), b.buildctl(b.builders[variant], "build", "--progress", "plain",
			"--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir,
			"--opt", "filename="+file, "--opt", "build-arg:BASE="+base, "--output", output)...)
	default:
		return 0, nil, fmt.Errorf("unknown variant %q", variant)
	}
	if err != nil {
		return 0, nil, err
	}
	p := parsePhases(out)
	p["total"] = d.Seconds()
	return d, p, nil
}

// Phases are seconds spent per build phase, read from plain progress.
type Phases map[string]float64

var (
	subDone    = regexp.MustCompile(`^#\d+ (exporting layers|pushing layers|transferring context:.*?) ([0-9.]+)s done$`)
	copyVertex = regexp.MustCompile(`^\[(2dfs \d+,\d+|\d+/\d+\] COPY|[^\]]*\] COPY)`)
)

// parsePhases reads BuildKit's plain progress: context transfer, the copy
// vertices (sum of their times; they may overlap), layer export
// (diffing and compression) and push.
func parsePhases(progress string) Phases {
	p := Phases{}
	for _, line := range strings.Split(progress, "\n") {
		if m := subDone.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			switch {
			case m[1] == "exporting layers":
				p["export"] += v
			case m[1] == "pushing layers":
				p["push"] += v
			default:
				p["context"] += v
			}
		}
	}
	for _, v := range testenv.Vertices(progress) {
		if v.Done && copyVertex.MatchString(v.Name) {
			p["copy"] += v.Seconds
		}
	}
	return p
}

// fieldContext is one build context holding the splits, a 2dfs.json and the
// two Dockerfiles (COPY and COPY --link) that build the same files.
type fieldContext struct {
	dir    string
	splits int
	cols   int
}

func splitName(i int) string { return fmt.Sprintf("split-%03d.bin", i) }

func newFieldContext(dir string, splits, cols int, base string) (*fieldContext, error) {
	if err := os.MkdirAll(filepath.Join(dir, "splits"), 0o755); err != nil {
		return nil, err
	}
	type allot struct {
		Src string `json:"src"`
		Dst string `json:"dst"`
		Row int    `json:"row"`
		Col int    `json:"col"`
	}
	desc := struct {
		Base       string  `json:"base"`
		Allotments []allot `json:"allotments"`
	}{Base: base}
	var df strings.Builder
	df.WriteString("ARG BASE\nFROM ${BASE}\n")
	for i := range splits {
		src, dst := "splits/"+splitName(i), "/model/splits/"+splitName(i)
		desc.Allotments = append(desc.Allotments, allot{src, dst, i / cols, i % cols})
		fmt.Fprintf(&df, "COPY %s %s\n", src, dst)
	}
	dt, _ := json.MarshalIndent(desc, "", "  ")
	link := strings.ReplaceAll(df.String(), "COPY ", "COPY --link ")
	for name, data := range map[string]string{"2dfs.json": string(dt), "Dockerfile": df.String(), "Dockerfile.link": link} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	return &fieldContext{dir: dir, splits: splits, cols: cols}, nil
}

// randomData returns n bytes from a ChaCha8 stream seeded by seed and key:
// incompressible, like model weights, and reproducible from the seed.
func randomData(seed, key uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	binary.LittleEndian.PutUint64(s[8:], key)
	r := rand.NewChaCha8(s)
	buf := make([]byte, n)
	_, _ = r.Read(buf)
	return buf
}

// writeSplit writes split i with the given data into every context.
func writeSplit(ctxs []*fieldContext, i int, data []byte) error {
	for _, c := range ctxs {
		if err := os.WriteFile(filepath.Join(c.dir, "splits", splitName(i)), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
