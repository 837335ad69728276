package llb

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

const sum = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestConvertRemoteSources(t *testing.T) {
	const signed = "https://files.example/m/l3.bin?X-Amz-Signature=SECRETSIG"
	planned := []descriptor.PlannedAllotment{
		{Index: 0, Cell: field.Cell{Row: 0, Col: 0}, Copies: []descriptor.Copy{{Src: "a.bin", Dst: "/a.bin"}}},
		{Index: 1, Cell: field.Cell{Row: 1, Col: 0}, AuthSecret: "hub-token", Copies: []descriptor.Copy{
			{Src: descriptor.RedactURL(signed), URL: signed, Checksum: sum, Dst: "/m/l3.bin"},
		}},
		{Index: 2, Cell: field.Cell{Row: 2, Col: 0}, From: "weights", Copies: []descriptor.Copy{{Src: "ckpt", Dst: "/ckpt", Dir: true}}},
		{Index: 3, Cell: field.Cell{Row: 3, Col: 0}, From: "registry.example/w:v1", Copies: []descriptor.Copy{{Src: "opt/w.bin", Dst: "/w.bin"}}},
	}
	epoch := time.Unix(1700000000, 0).UTC()
	res, err := Convert(planned, Options{
		Context:  bkllb.Local("context"),
		Base:     bkllb.Scratch(),
		Platform: amd64,
		Epoch:    epoch,
		From: map[string]bkllb.State{
			"weights":               bkllb.Local("context-weights"),
			"registry.example/w:v1": bkllb.Image("registry.example/w:v1", bkllb.Platform(amd64)),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	all, names, head := ops(t, res.State)
	inputs := all[head].Inputs
	if len(inputs) != 4 {
		t.Fatalf("merge has %d inputs, want 4", len(inputs))
	}
	// Each allotment reads from its own source: the context, the HTTP
	// source, the named context, the image.
	wantSource := []string{"local://context", "https://files.example/m/l3.bin?X-Amz-Signature=SECRETSIG", "local://context-weights", "docker-image://registry.example/w:v1"}
	wantSrc := []string{"/a.bin", "/file", "/ckpt", "/opt/w.bin"}
	for i, in := range inputs {
		d := digest.Digest(in.Digest)
		file := all[d].GetFile()
		if file == nil || len(all[d].Inputs) != 1 {
			t.Fatalf("input %d: %v", i, all[d])
		}
		srcDigest := digest.Digest(all[d].Inputs[0].Digest)
		src := all[srcDigest].GetSource()
		if src == nil || src.Identifier != wantSource[i] {
			t.Fatalf("input %d reads %v, want %s", i, src, wantSource[i])
		}
		cp := file.Actions[0].GetCopy()
		if cp.Src != wantSrc[i] || cp.Timestamp != epoch.UnixNano() || cp.ModeStr != NormalMode || cp.Owner.User.GetByID() != 0 {
			t.Errorf("input %d copy = %v", i, cp)
		}
		if i == 1 {
			// Pinned, authorized by the named secret, saved under a fixed name.
			want := map[string]string{
				pb.AttrHTTPChecksum:         sum,
				pb.AttrHTTPAuthHeaderSecret: "hub-token",
				pb.AttrHTTPFilename:         "file",
				pb.AttrHTTPPerm:             "0644",
			}
			for k, v := range want {
				if src.Attrs[k] != v {
					t.Errorf("HTTP source attr %s = %q, want %q (all: %v)", k, src.Attrs[k], v, src.Attrs)
				}
			}
			if names[srcDigest] != "[2dfs 1,0] fetch https://files.example/m/l3.bin" {
				t.Errorf("fetch vertex name = %q", names[srcDigest])
			}
		}
	}
	// The signature is only in the source identifier, which BuildKit needs
	// to fetch: never in a vertex name, the history or the record.
	for d, n := range names {
		if strings.Contains(n, "SECRETSIG") {
			t.Errorf("vertex %s is named %q", d, n)
		}
	}
	var history []string
	for _, h := range res.Image.History {
		history = append(history, h.CreatedBy)
	}
	wantHistory := "2dfs a.bin -> /a.bin|2dfs https://files.example/m/l3.bin -> /m/l3.bin|2dfs --from=weights ckpt -> /ckpt|2dfs --from=registry.example/w:v1 opt/w.bin -> /w.bin"
	if got := strings.Join(history, "|"); got != wantHistory {
		t.Errorf("history = %s\nwant %s", got, wantHistory)
	}
	record, err := json.Marshal(res.Record)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(record), "SECRETSIG") || !strings.Contains(string(record), "/m/l3.bin") {
		t.Errorf("record = %s", record)
	}
	if label := res.Image.Config.Labels[field.LabelKey]; strings.Contains(label, "SECRETSIG") {
		t.Errorf("record label = %s", label)
	}
}

func TestConvertUnpinnedAndMissingFrom(t *testing.T) {
	a := descriptor.PlannedAllotment{Cell: field.Cell{Row: 0, Col: 0}, Copies: []descriptor.Copy{{Src: "http://h/x", URL: "http://h/x", Dst: "/x"}}}
	all, _, _ := ops(t, FetchState(a, a.Copies[0]))
	for _, op := range all {
		if src := op.GetSource(); src != nil {
			if _, ok := src.Attrs[pb.AttrHTTPChecksum]; ok {
				t.Errorf("unpinned URL has a checksum: %v", src.Attrs)
			}
			if _, ok := src.Attrs[pb.AttrHTTPAuthHeaderSecret]; ok {
				t.Errorf("URL without authSecret asks for a secret: %v", src.Attrs)
			}
		}
	}
	b := descriptor.PlannedAllotment{Cell: field.Cell{Row: 0, Col: 0}, From: "weights", Copies: []descriptor.Copy{{Src: "x", Dst: "/x"}}}
	_, err := Convert([]descriptor.PlannedAllotment{b}, Options{Base: bkllb.Scratch(), Platform: amd64})
	if err == nil || err.Error() != `allotment 0,0 reads from "weights", which the build did not load` {
		t.Fatalf("err = %v", err)
	}
}
