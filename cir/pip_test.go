package cir

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestFindInterpreter(t *testing.T) {
	i, err := FindInterpreter([]string{"python3.11", "python3.11-config", "python3"}, "12.8\n")
	if err != nil || i.Version != "3.11" || i.ABI() != "cp311" || i.SitePackages() != "/usr/local/lib/python3.11/dist-packages" {
		t.Fatalf("%+v %v", i, err)
	}
	for _, tc := range []struct {
		bin     []string
		version string
		want    string
	}{
		{nil, "12.8", "the base has no /usr/bin/python3.X"},
		{[]string{"python3.11", "python3.12"}, "12.8", "several interpreters (3.11, 3.12)"},
		{[]string{"python3.11"}, "buster/sid", `/etc/debian_version says "buster/sid"`},
	} {
		if _, err := FindInterpreter(tc.bin, tc.version); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FindInterpreter(%v, %q) = %v, want %q", tc.bin, tc.version, err, tc.want)
		}
	}
}

func TestPlatformTags(t *testing.T) {
	tags, err := Interpreter{Version: "3.11", DebianRelease: "12"}.PlatformTags("arm64")
	if err != nil {
		t.Fatal(err)
	}
	if tags[0] != "manylinux_2_36_aarch64" || tags[19] != "manylinux_2_17_aarch64" || strings.Join(tags[20:], " ") != "manylinux2014_aarch64 linux_aarch64" {
		t.Fatalf("tags %v", tags)
	}
	if _, err := (Interpreter{DebianRelease: "12"}).PlatformTags("mips"); err == nil {
		t.Fatal("unknown architecture accepted")
	}
}

func TestParseReport(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	in := `{"version": "1", "install": [
	  {"download_info": {"url": "http://idx/files/tqdm-4.66.0-py3-none-any.whl", "archive_info": {"hash": "sha256=` + sum + `"}}, "metadata": {"name": "tqdm", "version": "4.66.0"}},
	  {"download_info": {"url": "http://idx/files/Foo_Bar-1.0-cp311-cp311-manylinux2014_x86_64.whl", "archive_info": {"hashes": {"sha256": "` + sum + `"}}}, "metadata": {"name": "Foo_Bar", "version": "1.0"}}]}`
	ws, err := ParseReport([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Name != "foo-bar" || ws[0].Filename != "Foo_Bar-1.0-cp311-cp311-manylinux2014_x86_64.whl" || ws[1].Digest.Encoded() != sum {
		t.Fatalf("%+v", ws)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"version": "0"}`, `format version "0"`},
		{`{"version": "1", "install": [{"download_info": {"url": "http://u:p@idx/files/a-1.tar.gz"}, "metadata": {"name": "a", "version": "1"}}]}`, "a 1 resolved to a-1.tar.gz, which is no wheel"},
		{`{"version": "1", "install": [{"download_info": {"url": "http://u:p@idx/files/a-1-py3-none-any.whl?tok=s"}, "metadata": {"name": "a", "version": "1"}}]}`, "a 1 from http://idx/files/a-1-py3-none-any.whl has no sha256"},
	} {
		if _, err := ParseReport([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "tok=s") {
			t.Errorf("ParseReport(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestResolveError(t *testing.T) {
	missing := ParseMissing("a\t\nb==1\t\nc>=2\ttop 1.0 → mid 2.0\n")
	err := ResolveError("linux/arm64", "http://u:p@idx/simple", missing, "2dfs: python 3.11\nERROR: No matching distribution found for a\n")
	if err.Error() != "pip: no wheel for linux/arm64 (Python 3.11) on http://idx/simple for: a, b==1, c>=2 (via top 1.0 → mid 2.0)" {
		t.Fatal(err)
	}
	err = ResolveError("linux/arm64", "http://idx:9/simple", nil, "WARNING: Retrying ... Failed to establish a new connection: [Errno 111] Connection refused')': /simple/a/\n")
	if !strings.HasPrefix(err.Error(), "pip: index http://idx:9/simple cannot be reached: ") {
		t.Fatal(err)
	}
	// An unreachable index leaves every requirement unfound too; the
	// index is what the user must fix.
	err = ResolveError("linux/arm64", "http://idx:9/simple", []Missing{{Requirement: "a"}}, "Failed to establish a new connection: [Errno 111] Connection refused\nERROR: No matching distribution found for a\n")
	if !strings.HasPrefix(err.Error(), "pip: index http://idx:9/simple cannot be reached: ") {
		t.Fatal(err)
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://PyPI.example.com/simple": "https://pypi.example.com",
		"http://127.0.0.1:8080/a/simple/": "http://127.0.0.1:8080",
		"not a url":                       "",
	} {
		if got := Origin(in); got != want {
			t.Errorf("Origin(%q) = %q, want %q", in, got, want)
		}
	}
}

// SetSizes takes each wheel's size from sizes.py's lines by its sha256 and
// refuses a wheel without one, naming it.
func TestSetSizes(t *testing.T) {
	a := digest.FromString("a")
	b := digest.FromString("b")
	w := []Wheel{{Name: "a", Version: "1", Digest: a, URL: "http://u:p@idx/a.whl"}, {Name: "b", Version: "2", Digest: b, URL: "http://idx/b.whl"}}
	if err := SetSizes(w, a.Encoded()+" 1234\n"+b.Encoded()+" 99\n"); err != nil || w[0].Size != 1234 || w[1].Size != 99 {
		t.Fatalf("%v %+v", err, w)
	}
	if err := SetSizes(w, b.Encoded()+" 99\n"); err == nil || err.Error() != "pip resolve: no size was read for wheel a 1 from http://idx/a.whl (the layer budget needs it)" {
		t.Errorf("missing size: %v", err)
	}
	if err := SetSizes(w, a.Encoded()+" -1\n"); err == nil || !strings.Contains(err.Error(), `size "-1" of the wheel with sha256 `+a.Encoded()+" is not a size") {
		t.Errorf("bad size: %v", err)
	}
}
