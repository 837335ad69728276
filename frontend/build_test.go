package frontend

import (
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/apicaps"
)

// capsClient is a gateway client that only answers BuildOpts.
type capsClient struct {
	client.Client
	caps []*apicaps.PBCap
}

func (c capsClient) BuildOpts() client.BuildOpts {
	return client.BuildOpts{LLBCaps: pb.Caps.CapSet(c.caps), Opts: map[string]string{"filename": "x.json"}}
}

func TestCheckCapsWithoutMergeOp(t *testing.T) {
	var caps []*apicaps.PBCap
	for _, c := range pb.Caps.All() {
		if c.ID != string(pb.CapMergeOp) {
			caps = append(caps, c)
		}
	}
	err := checkCaps(capsClient{caps: caps})
	if err == nil || !strings.Contains(err.Error(), "does not support MergeOp") {
		t.Fatalf("got %v", err)
	}
	if err := checkCaps(capsClient{caps: append(caps, &apicaps.PBCap{ID: string(pb.CapMergeOp), Enabled: true})}); err != nil {
		t.Fatalf("with MergeOp: %v", err)
	}
}

func TestWithFilenameDoesNotMutate(t *testing.T) {
	inner := optsClient{opts: map[string]string{"filename": "x.json", "no-cache": ""}}
	opts := withFilename{Client: inner, filename: "2dfs.yaml"}.BuildOpts().Opts
	if opts["filename"] != "2dfs.yaml" {
		t.Fatalf("opts = %v, want filename 2dfs.yaml", opts)
	}
	if _, ok := opts["no-cache"]; !ok {
		t.Errorf("opts = %v: the wrapper dropped the other opts", opts)
	}
	if got := inner.BuildOpts().Opts; got["filename"] != "x.json" || len(got) != 2 {
		t.Fatalf("the wrapped client's opts changed to %v", got)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	if e, err := sourceDateEpoch(map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}); err != nil || e.Unix() != 1700000000 {
		t.Fatalf("got %v %v", e, err)
	}
	if e, err := sourceDateEpoch(nil); err != nil || e.Unix() != 0 {
		t.Fatalf("default epoch: %v %v", e, err)
	}
	if _, err := sourceDateEpoch(map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}); err == nil || !strings.Contains(err.Error(), `SOURCE_DATE_EPOCH="yesterday"`) {
		t.Fatalf("got %v", err)
	}
}
