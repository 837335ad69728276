package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// RaceEnv names the variable that makes ProxyBin and `hack/daemons proxy`
// build 2dfs-proxy with the race detector (hack/test sets it).
const RaceEnv = "TDFS_PROXY_RACE"

var proxyBuilds sync.Map // bin folder -> *proxyBuild

type proxyBuild struct {
	once sync.Once
	err  error
}

// ProxyBin builds cmd/2dfs-proxy from the tree at root into binDir once per
// process (with -race when RaceEnv is set) and returns the binary's path.
func ProxyBin(root, binDir string) (string, error) {
	return proxyBin(root, binDir, os.Getenv(RaceEnv) != "")
}

// PlainProxyBin is ProxyBin without the race detector whatever RaceEnv
// says, for tests that measure the proxy (the detector multiplies its
// memory): binDir must not be one ProxyBin builds into.
func PlainProxyBin(root, binDir string) (string, error) {
	return proxyBin(root, binDir, false)
}

func proxyBin(root, binDir string, race bool) (string, error) {
	v, _ := proxyBuilds.LoadOrStore(binDir, &proxyBuild{})
	b := v.(*proxyBuild)
	b.once.Do(func() {
		args := []string{"build", "-o", binDir + "/"}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/2dfs-proxy")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s ./cmd/2dfs-proxy: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	return filepath.Join(binDir, "2dfs-proxy"), b.err
}

// Proxy is a running 2dfs-proxy.
type Proxy struct {
	*Proc
	Addr string // host:port
}

// StartProxy runs the 2dfs-proxy binary bin on a free loopback port in front
// of the registry at upstream (host:port, plain HTTP), its output appended
// to log; it is ready when /livez answers 200. Without -store-dir or
// -redis-addr in args it keeps objects in memory only.
func StartProxy(bin, upstream, log string, args ...string) (*Proxy, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	all := []string{"-listen", addr, "-upstream", "http://" + upstream}
	if flags := strings.Join(args, " "); !strings.Contains(flags, "-store-dir") && !strings.Contains(flags, "-redis-addr") {
		all = append(all, "-store-dir", "")
	}
	p := &Proxy{Proc: &Proc{Name: "2dfs-proxy " + addr, Bin: bin, Args: append(all, args...), Log: log,
		Ready: func() bool { return HTTPStatus("http://"+addr+"/livez") == 200 }}, Addr: addr}
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// Failures is what the proxy's log shows of a data race or a panic, or "".
func (p *Proxy) Failures() string {
	if log := p.LogTail(); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic:") {
		return log
	}
	return ""
}
