package llb

import (
	"strings"
	"testing"
	"time"

	bkllb "github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/cir"
)

// debEnv returns the environment of the deb.sh exec of st and the digest
// of the vertex (its cache key's core).
func debEnv(t *testing.T, st bkllb.State) ([]string, digest.Digest) {
	t.Helper()
	return execEnv(t, st, "deb.sh")
}

// execEnv returns the environment of the exec of st that runs script, and
// the digest of its vertex.
func execEnv(t *testing.T, st bkllb.State, script string) ([]string, digest.Digest) {
	t.Helper()
	all, _, _ := ops(t, st)
	for d, op := range all {
		if e := op.GetExec(); e != nil && strings.Contains(strings.Join(e.Meta.Args, " "), script) {
			return e.Meta.Env, d
		}
	}
	t.Fatalf("no %s exec", script)
	return nil, ""
}

// The base's dpkg filters are in the package layer's exec (DPKG_FILTERS),
// so its cache key follows them; without filters the variable is not set.
func TestDebLayerDpkgFilters(t *testing.T) {
	epoch := time.Unix(0, 0)
	d := cir.Deb{Name: "p", Version: "1", Arch: "amd64", Filename: "p_1_amd64.deb", URL: "http://r/p_1_amd64.deb", Digest: digest.FromString("p")}
	helper := bkllb.Image("helper")
	slim := cir.DpkgFilters{{Pattern: "/usr/share/doc/*"}, {Include: true, Pattern: "/usr/share/doc/*/copyright"}}

	plainEnv, plain := debEnv(t, DebLayer(d, helper, DebUnpack{MergedUsr: true}, epoch))
	for _, e := range plainEnv {
		if strings.HasPrefix(e, "DPKG_FILTERS=") {
			t.Errorf("no filters, but %s", e)
		}
	}
	env, filtered := debEnv(t, DebLayer(d, helper, DebUnpack{MergedUsr: true, DpkgFilters: slim}, epoch))
	want := "DPKG_FILTERS=path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
	found := false
	for _, e := range env {
		found = found || e == want
	}
	if !found {
		t.Errorf("env %q lacks %q", env, want)
	}
	if filtered == plain {
		t.Error("the same vertex with and without filters")
	}
	if _, again := debEnv(t, DebLayer(d, helper, DebUnpack{MergedUsr: true, DpkgFilters: append(cir.DpkgFilters{}, slim...)}, epoch)); again != filtered {
		t.Error("the same filters gave another vertex")
	}
	// A group passes them too.
	groupEnv, _ := debEnv(t, DebGroupLayer([]cir.Deb{d, {Name: "q", Version: "1", Arch: "amd64", Filename: "q_1_amd64.deb", URL: "http://r/q_1_amd64.deb", Digest: digest.FromString("q")}}, helper, DebUnpack{DpkgFilters: slim}, epoch))
	if !strings.Contains(strings.Join(groupEnv, "\x00"), want) {
		t.Errorf("group env %q lacks the filters", groupEnv)
	}
}

// The alternatives step gets the same filters as the package layers, so it
// makes no link to a file they leave out; none without filters.
func TestAlternativesDpkgFilters(t *testing.T) {
	epoch := time.Unix(0, 0)
	debs := []cir.Deb{{Name: "p", Version: "1", Arch: "amd64", Filename: "p_1_amd64.deb", URL: "http://r/p_1_amd64.deb", Digest: digest.FromString("p")}}
	helper := bkllb.Image("helper")
	slim := cir.DpkgFilters{{Pattern: "/usr/share/man/*"}}
	layer, _ := Alternatives(debs, helper, DebUnpack{MergedUsr: true}, epoch)
	plainEnv, plain := execEnv(t, layer, "alternatives.py")
	if strings.Contains(strings.Join(plainEnv, "\x00"), "DPKG_FILTERS=") {
		t.Errorf("no filters, but env %q", plainEnv)
	}
	layer, _ = Alternatives(debs, helper, DebUnpack{MergedUsr: true, DpkgFilters: slim}, epoch)
	env, filtered := execEnv(t, layer, "alternatives.py")
	if want := "DPKG_FILTERS=path-exclude /usr/share/man/*\n"; !strings.Contains(strings.Join(env, "\x00"), want) {
		t.Errorf("env %q lacks %q", env, want)
	}
	if filtered == plain {
		t.Error("the same alternatives vertex with and without filters")
	}
}
