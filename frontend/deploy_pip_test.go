package frontend

import (
	"strings"
	"testing"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/llb"
)

func TestWheelAuth(t *testing.T) {
	r := cir.Resolver{PipIndex: "https://pypi.example.com/simple", PipAuthSecret: "tok"}
	for u, want := range map[string]string{
		"https://pypi.example.com/files/a-1.0-py3-none-any.whl":      "tok",
		"https://PYPI.example.com/packages/a-1.0-py3-none-any.whl":   "tok",
		"https://cdn.example.com/files/a-1.0-py3-none-any.whl":       "",
		"http://pypi.example.com/files/a-1.0-py3-none-any.whl":       "",
		"https://pypi.example.com:8443/files/a-1.0-py3-none-any.whl": "",
	} {
		if got := wheelAuth(r, cir.Wheel{URL: u}); got != want {
			t.Errorf("wheel at %s: secret %q, want %q", u, got, want)
		}
	}
	if got := wheelAuth(cir.Resolver{PipIndex: r.PipIndex}, cir.Wheel{URL: "https://pypi.example.com/x.whl"}); got != "" {
		t.Errorf("no secret recorded, got %q", got)
	}
}

func TestPipFailure(t *testing.T) {
	o := llb.ResolveOptions{Index: "https://u:p@pypi.example.com/simple?x=1", AuthSecret: "tok", Platform: "linux/arm64"}
	files := func(m map[string]string) func(string) string { return func(n string) string { return m[n] } }
	for _, tc := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"/status": "0\n"}, ""},
		{map[string]string{"/status": "1\n", "/nosecret": "tok\n"}, `pip: the CIR's index https://pypi.example.com/simple needs the BuildKit secret "tok" (its pipAuthSecret), which this deploy was not given`},
		{map[string]string{"/status": "1\n", "/badsecret": "tok\n"}, `pip: the secret "tok" for the index https://pypi.example.com/simple holds a line break`},
		{map[string]string{"/status": "1\n", "/denied": "403 Forbidden\n"}, `pip: index https://pypi.example.com/simple answered 403 Forbidden to the Authorization header of the secret "tok"`},
		{map[string]string{"/status": "1\n", "/missing": "a\t\nb\ttop 1.0\n", "/log": "2dfs: python 3.12\n"}, `pip: no wheel for linux/arm64 (Python 3.12) on https://pypi.example.com/simple for: a, b (via top 1.0)`},
	} {
		err := pipFailure(o, files(tc.files))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.files, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "u:p") {
			t.Errorf("%v: %v, want %q", tc.files, err, tc.want)
		}
	}
}
