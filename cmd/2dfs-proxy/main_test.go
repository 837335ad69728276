package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseUpstream(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://registry.example.com":     true,
		"http://127.0.0.1:5000/":           true,
		"registry.example.com":             false,
		"ftp://registry.example.com":       false,
		"https://registry.example.com/v2":  false,
		"https://registry.example.com?x=1": false,
		"https://":                         false,
	} {
		u, err := parseUpstream(raw)
		if (err == nil) != ok {
			t.Errorf("parseUpstream(%q) = %v, %v; want ok=%v", raw, u, err, ok)
		}
		if err == nil && u.Path != "" {
			t.Errorf("parseUpstream(%q) kept path %q", raw, u.Path)
		}
	}
}

func TestMirrorFlags(t *testing.T) {
	m := mirrorFlags{}
	if err := m.Set("docker.io=https://registry-1.docker.io"); err != nil {
		t.Fatal(err)
	}
	if m["docker.io"].Host != "registry-1.docker.io" {
		t.Errorf("mirror = %v", m)
	}
	for _, bad := range []string{"docker.io", "=https://x", "docker.io=registry-1.docker.io"} {
		if err := m.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestRedisOptions(t *testing.T) {
	o, err := redisOptions("127.0.0.1:6379", 2, "proxy", "", map[string]bool{})
	if err != nil || o.Addr != "127.0.0.1:6379" || o.DB != 2 || o.Username != "proxy" {
		t.Fatalf("host:port: %+v, %v", o, err)
	}
	o, err = redisOptions("redis://u:p@redis.internal:6380/5", 0, "", "", map[string]bool{})
	if err != nil || o.Addr != "redis.internal:6380" || o.DB != 5 || o.Password != "p" {
		t.Fatalf("URL: %+v, %v", o, err)
	}
	o, err = redisOptions("redis://redis.internal:6380/5", 1, "", "", map[string]bool{"redis-db": true})
	if err != nil || o.DB != 1 {
		t.Fatalf("-redis-db over the URL: %+v, %v", o, err)
	}
	pw := t.TempDir() + "/pw"
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(redisPasswordEnv, "from-env")
	if o, err = redisOptions("r:1", 0, "", pw, map[string]bool{}); err != nil || o.Password != "s3cret" {
		t.Fatalf("password file: %+v, %v", o, err)
	}
	if o, err = redisOptions("r:1", 0, "", "", map[string]bool{}); err != nil || o.Password != "from-env" {
		t.Fatalf("password env: %+v, %v", o, err)
	}
	for _, bad := range []string{"redis.internal", "redis://x:y:z/abc"} {
		if _, err := redisOptions(bad, 0, "", "", map[string]bool{}); err == nil {
			t.Errorf("redisOptions(%q) accepted", bad)
		}
	}
}

// -version prints what the toolchain stamped into the binary: the binary is
// built with VCS stamping on (this machine's GOFLAGS may turn it off) and
// its line must agree with `go version -m`. In a Git checkout (a .git
// directory; the go command does not stamp from git worktrees) the revision
// must be HEAD.
func TestVersionFlag(t *testing.T) {
	bin := t.TempDir() + "/2dfs-proxy"
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("2dfs-proxy -version: %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 5 || fields[0] != "2dfs-proxy" || fields[1] != "github.com/tdfs-kit/tdfs" {
		t.Fatalf("2dfs-proxy -version printed %q, want NAME MODULE VERSION REVISION GO", out)
	}
	gotVersion, gotRevision := fields[2], fields[3]

	meta, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	wantVersion, wantRevision, modified := "", "unknown", false
	for _, line := range strings.Split(string(meta), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			wantVersion = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			wantRevision = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) == 2 && f[0] == "build" && f[1] == "vcs.modified=true":
			modified = true
		}
	}
	if modified {
		wantRevision += ".m"
	}
	if gotVersion != wantVersion || gotRevision != wantRevision {
		t.Errorf("-version says %s %s, the build info says %s %s", gotVersion, gotRevision, wantVersion, wantRevision)
	}

	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return // not a Git checkout: nothing stamped to compare with
	}
	if fi, err := os.Stat(strings.TrimSpace(string(top)) + "/.git"); err != nil || !fi.IsDir() {
		return // a git worktree: the go command stamps nothing
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(head)); strings.TrimSuffix(gotRevision, ".m") != want {
		t.Errorf("-version revision %s, HEAD is %s", gotRevision, want)
	}
}
