package frontend

import (
	"context"
	"strings"
	"testing"
)

// The assembled image names its CIR by manifest digest alone, so a CIR read
// from a registry, a mirror or an OCI layout gives one image.
func TestRecordedCIR(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"registry.example/app@" + d:        d,
		"mirror.example:5000/a/b/app@" + d: d,
		d:                                  d,
		"":                                 "",
	} {
		if got := (DeployRequest{CIR: in}).recordedCIR(); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// A "cir" context of a scheme no CIR comes from is refused with the forms
// that work.
func TestCIRSourceScheme(t *testing.T) {
	for _, v := range []string{"local:cir", "https://example.com/app.git", "registry.example/app:cir"} {
		_, _, err := cirSource(context.Background(), nil, nil, v)
		if err == nil || !strings.Contains(err.Error(), "it must name a CIR: cir=docker-image://REF, cir=oci-layout://PATH@sha256:DIGEST, or in bake a target") {
			t.Errorf("%q: %v", v, err)
		}
	}
}
