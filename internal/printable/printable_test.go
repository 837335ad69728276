package printable

import "testing"

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"/model/a.bin":        "/model/a.bin",
		"a\x1b[2Jb":           `a\x1b[2Jb`,
		"line\nnext":          "line\nnext",
		"nul\x00":             `nul\x00`,
		"del\x7f":             `del\x7f`,
		"c1\u0085":            `c1\u0085`,
		"bad\xffutf8":         `bad\xffutf8`,
		"replacement\uFFFDok": "replacement\uFFFDok",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}
