package cir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func sampleLock() *Lock {
	debs := []Deb{
		{Name: "libblas3", Version: "3.11.0-2", Arch: "amd64", URL: "http://deb.debian.org/debian/pool/main/l/lapack/libblas3_3.11.0-2_amd64.deb", Size: 151000, Digest: digest.Digest(cfgA)},
		{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Arch: "amd64", URL: "http://deb.debian.org/debian/pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb", Size: 87776, Digest: digest.Digest(cfgB)},
	}
	wheels := []Wheel{{Name: "requests", Version: "2.32.3", URL: "http://idx/files/requests-2.32.3-py3-none-any.whl", Digest: digest.Digest(cfgA), Filename: "requests-2.32.3-py3-none-any.whl", Size: 64928}}
	l := &Lock{Version: LockVersion, Inputs: LockInputs{Base: "debian@" + cfgA, Dependencies: Dependencies{Apt: []string{"python3-numpy"}, Pip: []string{"requests==2.32.3"}}, PipIndex: "http://idx/simple"}}
	l.Set(NewLockPlatform("linux/arm64", "3.11", debs, wheels))
	l.Set(NewLockPlatform("linux/amd64", "3.11", debs, wheels))
	return l
}

// The format: stable bytes (platforms sorted whatever the order they were
// set in), a round trip that gives the closure back as the resolvers gave
// it, the .deb file name with its epoch escaped as apt names it.
func TestLockRoundTrip(t *testing.T) {
	l := sampleLock()
	a, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeLock("app.lock", a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := back.Encode()
	if err != nil || string(a) != string(b) {
		t.Fatalf("round trip changed the bytes (%v):\n%s\n%s", err, a, b)
	}
	if !strings.HasPrefix(string(a), "{\n  \"version\": 1,\n  \"cir\": {\n    \"base\": \"debian@sha256:") || !strings.HasSuffix(string(a), "}\n") {
		t.Errorf("lock bytes:\n%s", a)
	}
	if l.Platforms[0].Platform != "linux/amd64" || l.Platforms[1].Platform != "linux/arm64" {
		t.Errorf("platforms not sorted: %+v", l.Platforms)
	}
	debs, wheels := back.Platform("linux/arm64").Closure()
	if debs[1].Filename != "zlib1g_1%3a1.2.13.dfsg-1_amd64.deb" || debs[1].Size != 87776 || debs[1].Digest != digest.Digest(cfgB) || wheels[0].Filename != "requests-2.32.3-py3-none-any.whl" || wheels[0].URL != "http://idx/files/requests-2.32.3-py3-none-any.whl" || wheels[0].Size != 64928 {
		t.Errorf("closure back: %+v %+v", debs, wheels)
	}
	// Set replaces a platform's entry and keeps the others.
	l.Set(LockPlatform{Platform: "linux/amd64", Python: "3.11", Wheels: l.Platforms[0].Wheels})
	if len(l.Platforms) != 2 || len(l.Platforms[0].Debs) != 0 || len(l.Platforms[1].Debs) != 2 {
		t.Errorf("after Set: %+v", l.Platforms)
	}
}

// Bad locks are refused with the file and the place named.
func TestLockErrors(t *testing.T) {
	good, err := sampleLock().Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"newer version", `"version": 1`, `"version": 2`, "lock app.lock: version 2 is not known to this 2dfs, which reads version 1; upgrade 2dfs"},
		{"unknown field", `"python": "3.11",`, `"python": "3.11", "extra": 1,`, `lock app.lock: json: unknown field "extra"`},
		{"bad digest", `"digest": "` + cfgB + `"`, `"digest": "md5:00"`, `lock app.lock: platforms[0] (linux/amd64): debs[1] (zlib1g): digest "md5:00" is not a sha256 digest`},
		{"not http", `"url": "http://idx/files/`, `"url": "file:///files/`, `lock app.lock: platforms[0] (linux/amd64): wheels[0] (requests): url "file:///files/requests-2.32.3-py3-none-any.whl" is not an http(s) URL`},
		{"credentials", `"url": "http://idx/files/`, `"url": "http://u:p@idx/files/`, `wheels[0] (requests): url http://idx/files/requests-2.32.3-py3-none-any.whl has credentials`},
		{"unsorted", `"platform": "linux/arm64"`, `"platform": "linux/aaa"`, `lock app.lock: platforms[1] (linux/aaa): platforms must be sorted and listed once`},
		{"no size", `"size": 151000`, `"size": 0`, `debs[0] (libblas3): size 0 is not a .deb's size`},
		{"no wheel size", `"size": 64928,`, ``, `wheels[0] (requests): size 0 is not a wheel's size`},
		{"truncated", `"platforms": [`, `"platforms": [}`, `lock app.lock: not valid JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(good), tc.from, tc.to, 1)
			if bad == string(good) {
				t.Fatalf("%q not in the lock", tc.from)
			}
			_, err := DecodeLock("app.lock", []byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// A lock of another CIR is refused, naming the file and what differs; the
// application and the config are not part of a lock's inputs.
func TestLockInputsCheck(t *testing.T) {
	r := sample(t)
	in := InputsOf(r)
	if err := in.Check("app.lock", InputsOf(r)); err != nil {
		t.Fatal(err)
	}
	r.Config.Env = append(r.Config.Env, "B=2")
	if err := in.Check("app.lock", InputsOf(r)); err != nil {
		t.Errorf("a config change must keep the lock: %v", err)
	}
	r.Dependencies.Pip = []string{"requests==2.32.4"}
	err := in.Check("app.lock", InputsOf(r))
	if err == nil || err.Error() != `lock app.lock was made for another CIR: its pip ["requests==2.32.3"], the CIR's are ["requests==2.32.4"]; re-resolve with --lock-update (or use another lock file)` {
		t.Errorf("got %v", err)
	}
}

// WriteLock replaces the file whole, leaves no temporary file behind, and
// ReadLock of a missing file is no lock.
func TestWriteLock(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "app.lock")
	if l, err := ReadLock(file); l != nil || err != nil {
		t.Fatalf("missing file: %v %v", l, err)
	}
	if err := os.WriteFile(file, []byte("old contents, longer than nothing"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An invalid lock is not written: the old file stays.
	if err := WriteLock(file, &Lock{Version: 1}); err == nil {
		t.Fatal("an invalid lock was written")
	}
	if dt, _ := os.ReadFile(file); string(dt) != "old contents, longer than nothing" {
		t.Fatalf("the old file changed: %q", dt)
	}
	l := sampleLock()
	if err := WriteLock(file, l); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLock(file)
	if err != nil || len(back.Platforms) != 2 {
		t.Fatalf("read back: %v %+v", err, back)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in the folder: %v", entries)
	}
}

// A lock file that never ends (here /dev/zero) is refused at the limit,
// not read whole.
func TestReadLockBounded(t *testing.T) {
	_, err := ReadLock("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "over the 16777216 byte limit") {
		t.Fatalf("ReadLock(/dev/zero) = %v", err)
	}
}
