package main

import (
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

const mb = 1e6

func mbps(bytes float64, d time.Duration) float64 { return bytes / mb / d.Seconds() }

// Experiment 6, first half: this machine's limits, on the split files of
// the cold build, measured before any build.
func (b *bench) machineLimits() error {
	fc, _, _, err := b.coldContext()
	if err != nil {
		return err
	}
	b.limits = map[string][]float64{}
	total := b.totalBytes()
	// A sample for the compressors, which are slow: up to 32 MiB.
	sample := min(int(total), 32<<20)
	for range b.runs {
		// Read: the files were just written, so this is the page cache,
		// as it is for BuildKit's context transfer right after an edit.
		start := time.Now()
		var data []byte
		for i := range b.splits {
			dt, err := os.ReadFile(filepath.Join(fc.dir, "splits", splitName(i)))
			if err != nil {
				return err
			}
			if len(data) < sample {
				data = append(data, dt[:min(len(dt), sample-len(data))]...)
			}
		}
		b.limits["read (page cache)"] = append(b.limits["read (page cache)"], mbps(total, time.Since(start)))

		start = time.Now()
		h := sha256.New()
		for range b.splits {
			h.Write(data)
		}
		b.limits["sha256, 1 core"] = append(b.limits["sha256, 1 core"], mbps(float64(b.splits*len(data)), time.Since(start)))

		start = time.Now()
		zw, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
		zw.Write(data)
		zw.Close()
		b.limits["gzip -6, 1 core"] = append(b.limits["gzip -6, 1 core"], mbps(float64(len(data)), time.Since(start)))

		// zstd as BuildKit runs it: level 1 (SpeedFastest) is the CLI's
		// default, 3 (SpeedDefault) BuildKit's.
		for _, z := range []struct {
			name  string
			level zstd.EncoderLevel
		}{{"zstd -1, 1 core", zstd.SpeedFastest}, {"zstd -3, 1 core", zstd.SpeedDefault}} {
			start = time.Now()
			ze, _ := zstd.NewWriter(io.Discard, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(z.level))
			ze.Write(data)
			ze.Close()
			b.limits[z.name] = append(b.limits[z.name], mbps(float64(len(data)), time.Since(start)))
		}

		// Disk write: the total bytes to a new file on the same disk as
		// BuildKit's root, through fsync.
		path := filepath.Join(b.work, "write-test")
		start = time.Now()
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		for written := 0.0; written < total; written += float64(len(data)) {
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		f.Close()
		st, _ := os.Stat(path)
		b.limits["disk write + fsync"] = append(b.limits["disk write + fsync"], mbps(float64(st.Size()), time.Since(start)))
		os.Remove(path)
	}
	for _, k := range []string{"read (page cache)", "sha256, 1 core", "gzip -6, 1 core", "zstd -1, 1 core", "zstd -3, 1 core", "disk write + fsync"} {
		b.add(&Row{Exp: 6, Name: "machine limit: " + k, Unit: "MB/s", Ours: b.limits[k]})
	}
	return nil
}

// bound is the tightest machine limit of an export pipeline: reading,
// hashing and writing the layer once, and compressing it on every core
// (BuildKit compresses layers in parallel).
func (b *bench) bound(compression string) (string, []float64) {
	cores := float64(runtime.NumCPU())
	names := []string{"disk write + fsync", "sha256, 1 core"}
	scale := map[string]float64{"disk write + fsync": 1, "sha256, 1 core": cores}
	switch compression {
	case "gzip":
		names = append(names, "gzip -6, 1 core")
		scale["gzip -6, 1 core"] = cores
	case "zstd -1":
		names = append(names, "zstd -1, 1 core")
		scale["zstd -1, 1 core"] = cores
	case "zstd -3":
		names = append(names, "zstd -3, 1 core")
		scale["zstd -3, 1 core"] = cores
	}
	best, bestV := "", []float64(nil)
	for _, n := range names {
		var v []float64
		for _, x := range b.limits[n] {
			v = append(v, x*scale[n])
		}
		if bestV == nil || median(v) < median(bestV) {
			best, bestV = n, v
		}
	}
	if scale[best] > 1 {
		best = fmt.Sprintf("%s × %d cores", best, int(cores))
	}
	return best, bestV
}

// Experiment 6, second half: cold 2dfs build throughput per compression.
func (b *bench) compression() error {
	fc, _, base, err := b.coldContext()
	if err != nil {
		return err
	}
	if b.limits == nil {
		if err := b.machineLimits(); err != nil {
			return err
		}
	}
	for _, comp := range []struct{ name, attrs string }{
		{"gzip", "compression=gzip,force-compression=true"},
		{"zstd -1", "compression=zstd,compression-level=1,force-compression=true"},
		{"zstd -3", "compression=zstd,compression-level=3,force-compression=true"},
		{"uncompressed", "compression=uncompressed,force-compression=true"},
	} {
		var v []float64
		var phases []Phases
		slug := strings.NewReplacer(" ", "", "-", "").Replace(comp.name)
		for run := range b.runs {
			if err := b.refreshCold(); err != nil {
				return err
			}
			if err := b.prune(vTDFS); err != nil {
				return err
			}
			d, p, err := b.build(vTDFS, fc.dir, b.refName("comp-"+slug, run), base, fmt.Sprintf("6-%s-r%d", slug, run),
				strings.Split(comp.attrs, ",")...)
			if err != nil {
				return err
			}
			v = append(v, mbps(b.totalBytes(), d))
			phases = append(phases, p)
		}
		name, lim := b.bound(comp.name)
		lim = slices.Clone(lim)
		for len(lim) < len(v) {
			lim = append(lim, median(lim))
		}
		b.add(&Row{Exp: 6, Key: "throughput/" + comp.name, Name: "cold 2dfs build + push, " + comp.name, Unit: "MB/s", Ours: v, Peer: "bound: " + name, PeerVals: lim,
			RatioKind: Relative, Detail: phaseText(phases)})
	}
	return nil
}
