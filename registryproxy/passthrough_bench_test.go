package registryproxy

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/tests/testenv"
)

// toolsDir is the folder of the pinned tools hack/tools.sh installs
// (TDFS_TOOLS, else the newest under ~/.cache/tdfs), or "" when there is no
// registry binary.
func toolsDir() string {
	if d := os.Getenv("TDFS_TOOLS"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	m, _ := filepath.Glob(filepath.Join(home, ".cache", "tdfs", "tools-*", "registry"))
	if len(m) == 0 {
		return ""
	}
	return filepath.Dir(m[len(m)-1])
}

func pushBlob(tb testing.TB, base, repo string, blob []byte) digest.Digest {
	d := digest.FromBytes(blob)
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		tb.Fatal(resp.Status, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(blob))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		tb.Fatal("push blob: ", resp.Status)
	}
	return d
}

// BenchmarkPassThrough compares GETs of a 32 MiB blob from the distribution
// registry straight, through the proxy, and through a bare TCP forwarder
// (io.Copy both ways, which splices: the floor of any proxy that is an
// extra hop), at 1 and 8 concurrent clients. The client reads as
// hack/bench's does (io.Copy into io.Discard). Rounds run the three in turn,
// rotating the order, so that all see the same load from the rest of the
// machine; the figures are the median (and quartiles) of the per-round
// ratios of each one's speed to the registry's, and the CPU per MB of the
// registry and this process together (on loopback a socket's receive
// processing is done by the sender, so both count). Compare ratios of one
// run; on a shared machine absolute figures swing.
//
//	go test ./registryproxy -run - -bench PassThrough -benchtime 30x
func BenchmarkPassThrough(b *testing.B) {
	tools := toolsDir()
	if tools == "" {
		b.Skip("the registry binary is not installed (hack/tools.sh)")
	}
	r, err := testenv.StartRegistry(tools, "bench", b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	defer r.Stop()
	reg, pid := "http://"+r.Addr, r.Pid()
	blob := make([]byte, 32<<20)
	_, _ = rand.Read(blob)
	d := pushBlob(b, reg, "bench/blob", blob)
	p, err := New(Options{Upstream: mustURL(reg), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	prx := httptest.NewServer(p)
	defer prx.Close()
	fwd := tcpForwarder(b, strings.TrimPrefix(reg, "http://"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(b *testing.B, base string) {
		resp, err := client.Get(base + "/v2/bench/blob/blobs/" + d.String())
		if err != nil {
			b.Error(err)
			return
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != int64(len(blob)) || resp.StatusCode != 200 {
			b.Errorf("GET: %s, %d bytes, %v", resp.Status, n, err)
		}
	}
	wave := func(conc int, base string) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() { defer wg.Done(); get(b, base) }()
		}
		wg.Wait()
		return time.Since(start)
	}
	sides := []struct{ name, base string }{{"direct", reg}, {"proxy", prx.URL}, {"tcp", fwd}}
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			b.SetBytes(int64(len(sides)) * int64(len(blob)) * int64(conc))
			ratios := make([][]float64, len(sides))
			total := make([]time.Duration, len(sides))
			cpu := make([]time.Duration, len(sides))
			i := 0
			for b.Loop() {
				d := make([]time.Duration, len(sides))
				for k := range sides {
					s := (i + k) % len(sides)
					c0 := cpuTime() + procCPU(pid)
					d[s] = wave(conc, sides[s].base)
					cpu[s] += cpuTime() + procCPU(pid) - c0
					total[s] += d[s]
				}
				i++
				for s := range sides {
					ratios[s] = append(ratios[s], float64(d[0])/float64(d[s]))
				}
			}
			mb := float64(len(blob)*conc*i) / 1e6
			for s, side := range sides {
				b.ReportMetric(mb/total[s].Seconds(), side.name+"-MB/s")
				b.ReportMetric(float64(cpu[s].Microseconds())/mb, side.name+"-cpuµs/MB")
				if s == 0 {
					continue
				}
				slices.Sort(ratios[s])
				n := len(ratios[s])
				b.ReportMetric(ratios[s][n/2], side.name+"-ratio")
				b.ReportMetric(ratios[s][n/4], side.name+"-q1")
				b.ReportMetric(ratios[s][3*n/4], side.name+"-q3")
			}
		})
	}
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user and system CPU time of process pid so far, from
// /proc (in clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 12th and 13th.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// tcpForwarder listens on loopback and forwards every connection to
// target, both ways, with io.Copy (splice between TCP sockets).
func tcpForwarder(tb testing.TB, target string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return "http://" + l.Addr().String()
}
