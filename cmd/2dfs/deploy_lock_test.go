package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/frontend"
)

const lockDigest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func lockRequest(pip string) frontend.DeployRequest {
	return frontend.DeployRequest{Record: &cir.Record{Base: cir.Base{Ref: "r/debian@" + lockDigest}, Dependencies: cir.Dependencies{Pip: []string{pip}}, Resolver: cir.Resolver{PipIndex: "http://i/simple"}}}
}

func assembled(platform, version string) *cir.LockPlatform {
	e := cir.NewLockPlatform(platform, "3.11", nil, []cir.Wheel{{Name: "a", Version: version, Filename: "a-" + version + "-py3-none-any.whl", URL: "http://i/a.whl", Size: 1000, Digest: digest.Digest(lockDigest)}})
	return &e
}

// The lock's life on the command line: written when absent, pinned when it
// has the platform, added to for another platform, left alone when
// followed, refused for another CIR, started afresh by --lock-update.
func TestDeployLockFlow(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.lock")
	amd := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	if _, err := openLock("", true, &frontend.DeployRequest{}, amd); err == nil || err.Error() != "--lock-update needs --lock FILE" {
		t.Fatalf("--lock-update alone: %v", err)
	}

	req := lockRequest("a>=1")
	dl, err := openLock(file, false, &req, amd)
	if err != nil || req.Lock == nil || req.Lock.Pinned != nil {
		t.Fatalf("absent lock: %v %+v", err, req.Lock)
	}
	if err := dl.save(req); err == nil {
		t.Error("saved a lock the deploy reported nothing for")
	}
	req.Lock.Assembled = assembled("linux/amd64", "1.0")
	if err := dl.save(req); err != nil {
		t.Fatal(err)
	}

	req = lockRequest("a>=1")
	dl, err = openLock(file, false, &req, arm)
	if err != nil || req.Lock.Pinned != nil {
		t.Fatalf("other platform: %v %+v", err, req.Lock)
	}
	req.Lock.Assembled = assembled("linux/arm64", "1.0")
	if err := dl.save(req); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(file)
	info, _ := os.Stat(file)

	req = lockRequest("a>=1")
	dl, err = openLock(file, false, &req, amd)
	if err != nil || req.Lock.Pinned == nil || req.Lock.Pinned.Wheels[0].Version != "1.0" {
		t.Fatalf("pinned: %v %+v", err, req.Lock)
	}
	req.Lock.Assembled = req.Lock.Pinned
	if err := dl.save(req); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(file); !os.SameFile(info, after) { // a rewrite renames a new file over it
		t.Error("a deploy that followed the lock rewrote it")
	}

	req = lockRequest("a>=2")
	if _, err := openLock(file, false, &req, amd); err == nil || !strings.Contains(err.Error(), "lock "+file+" was made for another CIR: its pip [\"a>=1\"], the CIR's are [\"a>=2\"]") {
		t.Fatalf("another CIR: %v", err)
	}
	dl, err = openLock(file, true, &req, amd)
	if err != nil || req.Lock.Pinned != nil {
		t.Fatalf("--lock-update of another CIR: %v", err)
	}
	req.Lock.Assembled = assembled("linux/amd64", "2.0")
	if err := dl.save(req); err != nil {
		t.Fatal(err)
	}
	l, err := cir.ReadLock(file)
	if err != nil || len(l.Platforms) != 1 || l.Inputs.Dependencies.Pip[0] != "a>=2" || l.Platforms[0].Wheels[0].Version != "2.0" {
		t.Fatalf("after --lock-update: %v %+v (was %s)", err, l, before)
	}
}
