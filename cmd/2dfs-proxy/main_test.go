package main

import (
	"os"
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
