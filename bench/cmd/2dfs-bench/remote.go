package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Experiment 7: the same field built cold from local files (sent through
// the client's context transfer), from URLs on a loopback HTTP server
// (fetched by buildkitd's HTTP source, pinned by checksum) and from another
// image in the registry ("from"). Every variant gets new bytes and its own
// destination folder, so no push finds its layers already in the registry.
func (b *bench) remoteSources() error {
	base, err := b.newBase()
	if err != nil {
		return err
	}
	local := filepath.Join(b.work, "remote-local")
	if err := os.MkdirAll(filepath.Join(local, "splits"), 0o755); err != nil {
		return err
	}
	urlDir, imgDir := filepath.Join(b.work, "remote-url"), filepath.Join(b.work, "remote-image")
	for _, d := range []string{urlDir, imgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(local, "splits"))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	defer srv.Close()
	serverURL := "http://" + l.Addr().String()

	type allot struct {
		Src      string `json:"src"`
		Checksum string `json:"checksum,omitempty"`
		From     string `json:"from,omitempty"`
		Dst      string `json:"dst"`
		Row      int    `json:"row"`
		Col      int    `json:"col"`
	}
	write := func(path string, as []allot) error {
		dt, _ := json.MarshalIndent(struct {
			Base       string  `json:"base"`
			Allotments []allot `json:"allotments"`
		}{base, as}, "", "  ")
		return os.WriteFile(path, dt, 0o644)
	}

	kinds := []string{"local files", "URLs", "image"}
	times := map[string][]float64{}
	phases := map[string][]Phases{}
	for run := range b.runs {
		srcImage := b.refName("remote-src", run)
		var localA, srcA, urlA, imgA []allot
		for i := range b.splits {
			b.key++
			data := randomData(b.seed, b.key, b.splitMiB<<20)
			if err := os.WriteFile(filepath.Join(local, "splits", splitName(i)), data, 0o644); err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			r, c, name := i/b.cols, i%b.cols, splitName(i)
			localA = append(localA, allot{Src: "splits/" + name, Dst: "/local/" + name, Row: r, Col: c})
			srcA = append(srcA, allot{Src: "splits/" + name, Dst: "/src/" + name, Row: r, Col: c})
			urlA = append(urlA, allot{Src: serverURL + "/" + name, Checksum: "sha256:" + hex.EncodeToString(sum[:]), Dst: "/url/" + name, Row: r, Col: c})
			imgA = append(imgA, allot{Src: "/src/" + name, From: srcImage, Dst: "/image/" + name, Row: r, Col: c})
		}
		for path, as := range map[string][]allot{
			filepath.Join(local, "2dfs.json"): localA, filepath.Join(local, "2dfs-src.json"): srcA,
			filepath.Join(urlDir, "2dfs.json"): urlA, filepath.Join(imgDir, "2dfs.json"): imgA,
		} {
			if err := write(path, as); err != nil {
				return err
			}
		}
		// The image the "image" variant reads, built untimed on the
		// base-image builder so the timed builder's cache stays empty.
		if _, _, err := b.cmd(fmt.Sprintf("7-src-image-r%d", run), filepath.Join(b.bin, "2dfs"), "build", "--addr", b.builders["base"], "--progress", "plain",
			"-f", filepath.Join(local, "2dfs-src.json"), "--build-context", "base=docker-image://"+base,
			"--output", "type=image,name="+srcImage+",push=true", local); err != nil {
			return err
		}
		for _, k := range runOrder(kinds, run) {
			if err := b.prune(vTDFS); err != nil {
				return err
			}
			dir := map[string]string{"local files": local, "URLs": urlDir, "image": imgDir}[k]
			slug := map[string]string{"local files": "local", "URLs": "url", "image": "image"}[k]
			d, p, err := b.build(vTDFS, dir, b.refName("remote-"+slug, run), base, fmt.Sprintf("7-cold-%s-r%d", slug, run))
			if err != nil {
				return err
			}
			times[k] = append(times[k], d.Seconds())
			phases[k] = append(phases[k], p)
			b.logf("exp 7 run %d: %s %.1fs", run+1, k, d.Seconds())
		}
	}
	mb := b.totalBytes() / 1e6
	detail := func(k string) string { return k + ": " + phaseText(phases[k]) }
	b.add(&Row{Exp: 7, Name: fmt.Sprintf("cold build of %.0f MB, from URLs (buildkitd's HTTP source) vs local files", mb), Unit: "s", Ours: times["URLs"], Peer: "local files", PeerVals: times["local files"], RatioKind: Speedup,
		Detail: detail("URLs") + "; " + detail("local files")})
	b.add(&Row{Exp: 7, Name: fmt.Sprintf("cold build of %.0f MB, from another image in the registry vs local files", mb), Unit: "s", Ours: times["image"], Peer: "local files", PeerVals: times["local files"], RatioKind: Speedup,
		Detail: detail("image")})
	b.res.Notes = append(b.res.Notes, "Experiment 7 serves the splits over plain HTTP on loopback with Go's http.FileServer and reads the image from the benchmark's registry; each variant builds after `buildctl prune --all`, with new bytes per run and its own destination folder, so every layer is exported and pushed. The context phase is the client's transfer; the URL and image variants have none.")
	return nil
}
