package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/buildkit/client"
)

func TestRedactProgress(t *testing.T) {
	in := make(chan *client.SolveStatus, 1)
	in <- &client.SolveStatus{
		Vertexes: []*client.Vertex{{Name: "[2dfs 1,0] fetch https://h/w.bin", Error: "digest mismatch for https://xxxxx:xxxxx@h/w.bin?sig=SECRETSIG: sha256:0"}},
		Statuses: []*client.VertexStatus{{ID: "https://h/w.bin?sig=SECRETSIG"}},
		Logs:     []*client.VertexLog{{Data: []byte("GET https://h/w.bin?sig=SECRETSIG\n")}},
		Warnings: []*client.VertexWarning{{Short: []byte("see https://u:pw@h/x?sig=SECRETSIG"), Detail: [][]byte{[]byte("http://h/?sig=SECRETSIG")}}},
	}
	close(in)
	out := <-redactProgress(in)
	dt, _ := json.Marshal(out)
	if strings.Contains(string(dt), "SECRETSIG") || strings.Contains(string(dt), "pw@") {
		t.Fatalf("progress shows credentials: %s", dt)
	}
	if out.Vertexes[0].Error != "digest mismatch for https://h/w.bin: sha256:0" {
		t.Fatalf("error = %q", out.Vertexes[0].Error)
	}
}

func TestSecretFlag(t *testing.T) {
	err := runBuild(t.Context(), buildFlags{secrets: []string{"id=tok,typo=x"}, compression: "zstd"}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--secret") {
		t.Fatalf("err = %v", err)
	}
}
