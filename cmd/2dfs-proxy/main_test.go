package main

import "testing"

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
