package frontend

import (
	"context"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/llb"
)

const remoteDescriptor = `{"allotments": [
  {"src": "a.bin", "dst": "/a.bin", "row": 0, "col": 0},
  {"src": "https://files.example/m/w.bin?sig=SECRETSIG", "checksum": "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "dst": "/w.bin", "row": 1, "col": 0},
  {"src": ["/opt/x", "./y"], "from": "weights", "dst": ["/x", "/y"], "row": 2, "col": 0}
]}`

// A failed fetch vertex becomes an error that names the allotment, its cell
// and the URL without its query, located at the src in the descriptor.
func TestExplainSolve(t *testing.T) {
	desc, err := descriptor.Parse("2dfs.json", []byte(remoteDescriptor))
	if err != nil {
		t.Fatal(err)
	}
	if got := fromPaths(desc); !reflect.DeepEqual(got, map[string][]string{"weights": {"opt/x", "y"}}) {
		t.Fatalf("fromPaths = %v", got)
	}
	planned, err := desc.PlanSources(func(string) (fs.FileMode, error) { return 0, nil }, func(string, string) (fs.FileMode, error) { return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	fetch := llb.FetchState(planned[1], planned[1].Copies[0])
	def, err := fetch.Marshal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var fetchDigest digest.Digest
	for d, md := range def.Metadata {
		if strings.Contains(md.Description["llb.customname"], "fetch") {
			fetchDigest = d
		}
	}
	cause := errors.New("failed to load cache key: digest mismatch for https://files.example/m/w.bin?sig=SECRETSIG: sha256:0 (expected: sha256:2c26)")
	err = explainSolve(solvererrdefs.WrapVertex(cause, fetchDigest), def, desc, planned)
	want := `2dfs.json:3:11: allotments[1] (row 1, col 0): src[0] "https://files.example/m/w.bin": failed to load cache key: digest mismatch for https://files.example/m/w.bin: sha256:0 (expected: sha256:2c26)`
	if err.Error() != want {
		t.Fatalf("error:\n%s\nwant:\n%s", err, want)
	}
	// Errors of no vertex of ours are still redacted.
	err = explainSolve(cause, def, desc, planned)
	if strings.Contains(err.Error(), "SECRETSIG") {
		t.Fatalf("error shows the signature: %s", err)
	}
}
