package frontend

import (
	"strings"
	"testing"

	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/apicaps"

	"github.com/tdfs-kit/tdfs/field"
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

func TestEmbedRecords(t *testing.T) {
	rec := func(base int) *field.Record {
		return field.NewRecord(base, []field.RecordedAllotment{{Row: 0, Col: 0, Dst: []string{"/a"}}})
	}
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"x":"y"}},"rootfs":{"type":"layers","diff_ids":[]}}`)

	meta := map[string][]byte{exptypes.ExporterImageConfigKey: config, "other": []byte("kept")}
	if err := embedRecords(meta, map[string]*field.Record{"linux/amd64": rec(1)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(meta[exptypes.ExporterImageConfigKey]), `"org.2dfs.field.allotments":[{"row":0,"col":0,"dst":["/a"]}]`) || string(meta["other"]) != "kept" {
		t.Fatalf("single platform: %s", meta)
	}

	meta = map[string][]byte{exptypes.ExporterImageConfigKey + "/linux/amd64": config, exptypes.ExporterImageConfigKey + "/linux/arm64": config}
	if err := embedRecords(meta, map[string]*field.Record{"linux/amd64": rec(1), "linux/arm64": rec(2)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(meta[exptypes.ExporterImageConfigKey+"/linux/arm64"]), `{\"version\":2,\"baseLayers\":2,\"allotments\":1}`) {
		t.Fatalf("arm64 config: %s", meta[exptypes.ExporterImageConfigKey+"/linux/arm64"])
	}

	meta = map[string][]byte{exptypes.ExporterImageConfigKey + "/linux/s390x": config}
	if err := embedRecords(meta, map[string]*field.Record{"linux/amd64": rec(1)}); err == nil || !strings.Contains(err.Error(), "no field record for the image config") {
		t.Fatalf("unknown platform: %v", err)
	}
}
