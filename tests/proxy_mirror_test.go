package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// hostsDir writes a containerd hosts directory that sends pulls and
// resolves for registry (host:port) to the proxy, as docs/proxy.md says.
func hostsDir(t *testing.T, registry, proxy string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, registry, "hosts.toml"), []byte(fmt.Sprintf(`server = "http://%s"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, registry, proxy)))
	return dir
}

// TestProxyContainerdMirror pulls partitions the way a cluster would:
// images are named by the registry, and containerd's hosts.toml sends
// resolves and pulls to the proxy (which sees ?ns=<registry>).
func TestProxyContainerdMirror(t *testing.T) {
	f := proxyField(t)

	t.Run("public", func(t *testing.T) {
		px := startProxy(t, env.registry)
		const selection = "0.1.1.1"
		ref := env.registry + "/" + f.repo + ":v1--" + selection
		out, d := ctrPullRun(t, ref, filesScript, "--hosts-dir", hostsDir(t, env.registry, px.addr))
		if out != f.wantFiles(t, selection) {
			t.Fatalf("files through the mirror:\n%s\nwant:\n%s", out, f.wantFiles(t, selection))
		}
		if want := crane(t, nil, "digest", px.addr+"/"+f.repo+":v1--"+selection); d != want {
			t.Fatalf("ctr got %s through the mirror, the proxy serves %s", d, want)
		}
		// The proxy answered with the mirror hint, and the registry itself
		// has no such tag: without the hosts file the pull fails.
		if !strings.Contains(px.logText(), "route=partition") {
			t.Fatalf("the proxy served no partition:\n%s", px.logText())
		}
		if out, err := tryCmd("", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests-direct", "images", "pull", "--plain-http", env.registry+"/"+f.repo+":v1--1.1.1.1"); err == nil {
			t.Fatalf("the registry served a partition tag itself:\n%s", out)
		}
		// A registry not on the allowlist is refused.
		other := startRegistry(t, "not-allowed", "")
		if out, err := tryCmd("", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests-direct", "images", "pull", "--hosts-dir", hostsDir(t, other.addr, px.addr), other.addr+"/"+f.repo+":v1--0.0.0.0"); err == nil || !strings.Contains(out, "403") {
			t.Fatalf("mirror request for a registry off the allowlist: %v\n%s", err, out)
		}
	})

	t.Run("private", func(t *testing.T) {
		hash, err := bcrypt.GenerateFromPassword([]byte("puller-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(t.TempDir(), "htpasswd")
		writeFile(t, htpasswd, []byte("puller:"+string(hash)+"\n"))
		reg := startRegistry(t, "private-mirror", fmt.Sprintf("auth:\n  htpasswd:\n    realm: tdfs-test\n    path: %s\n", htpasswd))
		crane(t, dockerConfig(t, map[string]string{reg.addr: "puller:puller-pw"}), "copy", f.ref, reg.addr+"/"+f.repo+":v1")

		creds := filepath.Join(t.TempDir(), "creds.json")
		data, _ := json.Marshal(map[string]any{reg.addr: map[string]string{"username": "puller", "password": "puller-pw"}})
		writeFile(t, creds, data)
		px := startProxy(t, reg.addr, "-mirror", reg.addr+"=http://"+reg.addr, "-upstream-credentials", creds, "-read-only")
		const selection = "2.0.2.0"
		ref := reg.addr + "/" + f.repo + ":v1--" + selection
		// containerd has no credentials at all: the proxy authenticates.
		out, _ := ctrPullRun(t, ref, filesScript, "--hosts-dir", hostsDir(t, reg.addr, px.addr))
		if out != f.wantFiles(t, selection) {
			t.Fatalf("files of the private partition:\n%s\nwant:\n%s", out, f.wantFiles(t, selection))
		}
		// Without -upstream-credentials, containerd's own credentials go
		// through the mirror; without them it gets nothing.
		own := startProxy(t, reg.addr)
		hosts := hostsDir(t, reg.addr, own.addr)
		out, _ = ctrPullRun(t, reg.addr+"/"+f.repo+":v1--0.0.0.1", filesScript, "--hosts-dir", hosts, "--user", "puller:puller-pw")
		if out != f.wantFiles(t, "0.0.0.1") {
			t.Fatalf("files of the private partition with ctr's own credentials:\n%s", out)
		}
		if out, err := tryCmd("", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests-direct", "images", "pull", "--hosts-dir", hosts, reg.addr+"/"+f.repo+":v1--1.0.1.0"); err == nil {
			t.Fatalf("ctr without credentials pulled through a proxy without -upstream-credentials:\n%s", out)
		}
		// Control: the same pull without the proxy is refused by the
		// registry.
		if out, err := tryCmd("", "ctr", "--address", env.ctrAddr, "--namespace", "tdfs-proxy-tests-direct", "images", "pull", "--plain-http", reg.addr+"/"+f.repo+":v1"); err == nil {
			t.Fatalf("the private registry served ctr without credentials:\n%s", out)
		}
		// -read-only: pushes through the mirror are refused.
		if out, err := tryCrane(nil, "copy", f.ref, px.addr+"/"+f.repo+":pushed"); err == nil || !strings.Contains(out, "read-only") {
			t.Fatalf("push through a read-only proxy: %v\n%s", err, out)
		}
		if _, err := tryCrane(dockerConfig(t, map[string]string{reg.addr: "puller:puller-pw"}), "digest", reg.addr+"/"+f.repo+":pushed"); err == nil {
			t.Fatal("a push through the read-only proxy reached the registry")
		}
	})
}
