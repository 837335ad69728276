package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Daemons are the shared daemons hack/daemons started under one folder.
type Daemons struct {
	Root         string // repository root (hack/daemons, hack/base-image)
	Dir          string // the hack/daemons folder
	Tools        string // TDFS_TOOLS: the pinned tool binaries
	BuildkitHost string // BUILDKIT_HOST of the main buildkitd
	Registry     string // TDFS_REGISTRY: host:port of the main registry (plain HTTP)
	Containerd   string // CONTAINERD_ADDRESS: the containerd socket
	DockerConfig string // DOCKER_CONFIG with the buildx builder "tdfs"
}

// Up starts the registry, the main buildkitd and containerd under dir with
// `hack/daemons up`. Ports are picked by probing, so another process may
// take one between the probe and the bind: it tries once more before
// giving up.
func Up(root, dir string) (*Daemons, error) {
	d := &Daemons{Root: root, Dir: dir}
	var out string
	var err error
	for attempt := 1; ; attempt++ {
		out, err = d.daemons("up")
		if err == nil {
			break
		}
		if attempt == 2 {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "%v (trying again)\n", err)
		_ = d.Down()
	}
	vars, err := ReadEnvFile(out)
	if err != nil {
		return nil, err
	}
	d.setFrom(func(k string) string { return vars[k] })
	return d, nil
}

// FromEnviron describes daemons started by a script (hack/bench) that
// exported hack/daemons' env file; dir is that hack/daemons folder.
func FromEnviron(root, dir string) (*Daemons, error) {
	d := &Daemons{Root: root, Dir: dir}
	d.setFrom(os.Getenv)
	if d.Tools == "" || d.BuildkitHost == "" || d.Registry == "" || d.Containerd == "" || dir == "" {
		return nil, fmt.Errorf("no daemons: TDFS_TOOLS, BUILDKIT_HOST, TDFS_REGISTRY, CONTAINERD_ADDRESS and the hack/daemons folder must be set (start them with hack/daemons up)")
	}
	return d, nil
}

func (d *Daemons) setFrom(get func(string) string) {
	d.Tools, d.BuildkitHost, d.Registry = get("TDFS_TOOLS"), get("BUILDKIT_HOST"), get("TDFS_REGISTRY")
	d.Containerd, d.DockerConfig = get("CONTAINERD_ADDRESS"), get("DOCKER_CONFIG")
}

// Down stops everything started under the folder.
func (d *Daemons) Down() error {
	_, err := d.daemons("down")
	return err
}

// Buildkitd starts one more buildkitd with its own empty root and returns
// its address.
func (d *Daemons) Buildkitd(name string) (string, error) { return d.daemons("buildkitd", name) }

// ContainerdBuildkitd starts one more buildkitd whose worker is the
// containerd at d.Containerd (namespace "buildkit", the OCI worker off),
// as on a node whose runtime is containerd: an image it exports with a
// name and no push lands in that containerd's image store. It returns its
// address.
func (d *Daemons) ContainerdBuildkitd(name string) (string, error) {
	return d.daemons("buildkitd-containerd", name)
}

// ExtraRegistry starts one more registry, which every buildkitd started
// after it reaches over plain HTTP, and returns its host:port.
func (d *Daemons) ExtraRegistry(name string) (string, error) { return d.daemons("registry", name) }

// Redis starts a redis-server without persistence and returns its host:port.
func (d *Daemons) Redis(name string) (string, error) { return d.daemons("redis", name) }

// Proxy starts a 2dfs-proxy (built into Dir/bin once; with the race
// detector when TDFS_PROXY_RACE is set) in front of the registry at
// upstream and returns its host:port. It runs until Down.
func (d *Daemons) Proxy(name, upstream string, flags ...string) (string, error) {
	return d.daemons("proxy", append([]string{name, upstream}, flags...)...)
}

// daemons runs hack/daemons CMD DIR ARGS... and returns its output.
func (d *Daemons) daemons(cmd string, args ...string) (string, error) {
	c := exec.Command(filepath.Join(d.Root, "hack/daemons"), append([]string{cmd, d.Dir}, args...)...)
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("hack/daemons %s %s: %v\n%s", cmd, strings.Join(args, " "), err, ExitStderr(err))
	}
	return strings.TrimSpace(string(out)), nil
}

// PlainHTTP makes every buildkitd started after this call reach the
// registry at hostport over plain HTTP (hack/daemons keeps the list in
// DIR/registries; a buildkitd reads it when it starts).
func (d *Daemons) PlainHTTP(hostport string) error {
	f, err := os.OpenFile(filepath.Join(d.Dir, "registries"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(hostport + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadEnvFile reads the `export K=V` lines of hack/daemons' env file.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			vars[k] = v
		}
	}
	return vars, sc.Err()
}

// BaseImage builds and pushes a small base image with hack/base-image
// (busybox; with a version, one more file so bases differ) on the buildkitd
// at buildkitHost.
func BaseImage(root, buildkitHost, ref, platforms, version string) error {
	cmd := exec.Command(filepath.Join(root, "hack/base-image"), ref, platforms, version)
	cmd.Env = append(os.Environ(), "BUILDKIT_HOST="+buildkitHost)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/base-image %s: %v\n%s", ref, err, out)
	}
	return nil
}
