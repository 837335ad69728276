package cir

import (
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseURIs(t *testing.T) {
	sum := strings.Repeat("0f", 32)
	out := "Reading package lists...\n" +
		"'http://deb.debian.org/debian/pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_arm64.deb' zlib1g_1%3a1.2.13.dfsg-1_arm64.deb 87776 SHA256:" + sum + "\n" +
		"'http://deb.debian.org/debian/pool/main/a/acl/libacl1_2.3.1-3_arm64.deb' libacl1_2.3.1-3_arm64.deb 100 SHA256:" + strings.ToUpper(sum) + "\n"
	debs, err := ParseURIs(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(debs) != 2 || debs[0].Name != "libacl1" || debs[1].Version != "1:1.2.13.dfsg-1" || debs[1].Arch != "arm64" || debs[1].Filename != "zlib1g_1%3a1.2.13.dfsg-1_arm64.deb" || debs[0].Digest.Encoded() != sum || debs[1].Size != 87776 {
		t.Fatalf("%+v", debs)
	}
	if _, err := ParseURIs("'http://x/a_1_amd64.deb' a_1_amd64.deb 1 MD5Sum:abc\n"); err == nil || !strings.Contains(err.Error(), "MD5Sum checksum only") {
		t.Fatalf("md5 only: %v", err)
	}
}

func TestAptError(t *testing.T) {
	log := "E: Unable to locate package nosuch-a\nE: Unable to locate package nosuch-b\nE: Package 'gone' has no installation candidate\nE: Version '9' for 'curl' was not found\n"
	if err := AptError("linux/arm64", log); err.Error() != "apt: no package for linux/arm64 in the base's repositories: nosuch-a, nosuch-b, gone, curl=9" {
		t.Fatal(err)
	}
	log = "Err:1 http://127.0.0.1:9 ./ InRelease\n  Could not connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)\nE: Unable to locate package a\n"
	if err := AptError("linux/amd64", log); !strings.HasPrefix(err.Error(), "apt: the base's repository cannot be reached: http://127.0.0.1:9 ./ InRelease") {
		t.Fatal(err)
	}
}

func TestDebianArch(t *testing.T) {
	for _, tc := range []struct {
		in   ocispec.Platform
		want string
	}{
		{ocispec.Platform{Architecture: "amd64"}, "amd64"}, {ocispec.Platform{Architecture: "arm64"}, "arm64"},
		{ocispec.Platform{Architecture: "arm", Variant: "v7"}, "armhf"}, {ocispec.Platform{Architecture: "386"}, "i386"},
	} {
		if got, err := DebianArch(tc.in); got != tc.want || err != nil {
			t.Errorf("DebianArch(%v) = %q, %v", tc.in, got, err)
		}
	}
	if _, err := DebianArch(ocispec.Platform{Architecture: "wasm"}); err == nil {
		t.Error("wasm accepted")
	}
}
