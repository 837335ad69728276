package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// ManifestAccept is the Accept header of a client that takes any image
// manifest or index, OCI or Docker.
const ManifestAccept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

// Registry is a distribution registry the caller owns (to kill and
// restart), unlike the shared one of Daemons.
type Registry struct {
	*Proc
	Addr string // host:port
	Dir  string // holds its config and data
}

// StartRegistry runs the pinned distribution registry from tools on a free
// port with its data and config under dir; authYAML (an "auth:" section or
// "") is added to its config. It is ready when /v2/ answers 200 or 401.
func StartRegistry(tools, name, dir, authYAML string) (*Registry, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, authYAML)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	ready := func() bool {
		s := HTTPStatus("http://" + addr + "/v2/")
		return s == 200 || s == 401
	}
	r := &Registry{Proc: &Proc{Name: "registry " + name + " " + addr, Bin: filepath.Join(tools, "registry"), Args: []string{"serve", cfgPath},
		Log: filepath.Join(dir, "registry.log"), Ready: ready}, Addr: addr, Dir: dir}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// StartRedis runs Debian's redis-server on a free loopback port with no
// persistence (files under dir) and waits until it answers PING.
func StartRedis(dir string) (*Proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("redis-server is not installed (hack/tools.sh installs it)")
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := &Proc{Name: "redis-server " + addr, Bin: bin, Log: filepath.Join(dir, "redis.log"), Ready: func() bool { return redisPing(addr) },
		Args: []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}}
	if err := p.Start(); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_, _ = c.Write([]byte("PING\r\n"))
	buf := make([]byte, 7)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := io.ReadFull(c, buf)
	return string(buf[:n]) == "+PONG\r\n"
}
