package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a daemon the caller started and owns: it can be stopped, killed
// and started again with the same command line. On Linux it dies with the
// process that started it.
type Proc struct {
	Name  string
	Bin   string
	Args  []string
	Env   []string    // added to os.Environ()
	Log   string      // file the output is appended to
	Ready func() bool // if set, Start waits until it says true

	cmd  *exec.Cmd
	done chan struct{}
}

// StartProc starts bin with args, output appended to the file log.
func StartProc(name, bin, log string, env []string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Bin: bin, Args: args, Env: env, Log: log}
	return p, p.Start()
}

// Start starts the process (again, after Stop or Kill) and waits until it
// is ready.
func (p *Proc) Start() error {
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	if err := p.WaitReady(); err != nil {
		p.Stop()
		return err
	}
	return nil
}

// Pid is the process id of the running process (0 before Start).
func (p *Proc) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// WaitReady waits until Ready says true (see WaitUntil).
func (p *Proc) WaitReady() error {
	if p.Ready == nil {
		return nil
	}
	return WaitUntil(p.Name, p, p.Ready)
}

// Running says whether the process was started and has not exited.
func (p *Proc) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *Proc) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Kill sends SIGKILL: a crash.
func (p *Proc) Kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// PeakRSS is the largest resident set size the running process has had
// (VmHWM in /proc/PID/status; Linux only).
func (p *Proc) PeakRSS() (int64, error) {
	if !p.Running() {
		return 0, fmt.Errorf("%s is not running", p.Name)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// LogTail is the last 8000 bytes of the log.
func (p *Proc) LogTail() string {
	data, _ := os.ReadFile(p.Log)
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// FreePort is a loopback TCP port nothing listens on right now, below the
// kernel's ephemeral range (as hack/daemons picks them): the kernel hands
// ports inside that range to outgoing connections, so one picked there can
// be taken before the daemon that is given it binds.
func FreePort() (int, error) {
	low := 32768
	if dt, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(dt)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low-10000 < 1000 {
		return 0, fmt.Errorf("the ephemeral port range starts at %d: no room for daemon ports below it", low)
	}
	var last error
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port below %d: %w", low, last)
}

// FreeAddr is 127.0.0.1:FreePort().
func FreeAddr() (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}

// WaitTimeout is how long WaitUntil waits.
const WaitTimeout = 30 * time.Second

// WaitUntil polls ok every 100 ms for up to WaitTimeout; it gives up early
// with the log if p (may be nil) exits.
func WaitUntil(what string, p *Proc, ok func() bool) error {
	for deadline := time.Now().Add(WaitTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return nil
		}
		if p != nil && p.cmd != nil && !p.Running() {
			return fmt.Errorf("%s exited:\n%s", p.Name, p.LogTail())
		}
	}
	log := ""
	if p != nil {
		log = p.LogTail()
	}
	return fmt.Errorf("%s: not ready after %v\n%s", what, WaitTimeout, log)
}

// HTTPStatus is the status of a GET of url, or 0 if there was no answer.
func HTTPStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Output runs a command in dir (the current folder if "") with extra
// environment variables and returns its combined output.
func Output(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// ExitStderr is the standard error a command run with Output() kept in
// its *exec.ExitError, if any.
func ExitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
