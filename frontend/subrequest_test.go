package frontend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/frontend/subrequests"
	"github.com/moby/buildkit/frontend/subrequests/outline"
	"github.com/moby/buildkit/frontend/subrequests/targets"
	"github.com/moby/buildkit/solver/pb"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// optsClient is a gateway client that only answers BuildOpts, with the same
// opts map on every call (as the real gateway: a caller that writes into it
// changes what the next call sees), and with every LLB capability.
type optsClient struct {
	client.Client
	opts map[string]string
}

func (c optsClient) BuildOpts() client.BuildOpts {
	return client.BuildOpts{LLBCaps: pb.Caps.CapSet(pb.Caps.All()), Opts: c.opts}
}

const subrequestDescriptor = `{
  "base": "registry.example.com/runtime:v1",
  "allotments": [
    {"src": "a.bin", "dst": "/data/", "row": 0, "col": 0},
    {"src": "b.bin", "dst": "/data/", "row": 0, "col": 1}
  ]
}`

func subrequest(t *testing.T, request string) (*client.Result, bool) {
	t.Helper()
	opts := map[string]string{}
	if request != "" {
		opts["requestid"] = request
	}
	bc, err := dockerui.NewClient(optsClient{opts: opts})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := descriptor.Parse("2dfs.json", []byte(subrequestDescriptor))
	if err != nil {
		t.Fatal(err)
	}
	res, ok, err := handleSubrequest(context.Background(), bc, desc, []byte(subrequestDescriptor))
	if err != nil {
		t.Fatalf("%s: %v", request, err)
	}
	return res, ok
}

func TestSubrequestOutline(t *testing.T) {
	res, ok := subrequest(t, outline.SubrequestsOutlineDefinition.Name)
	if !ok || res == nil {
		t.Fatalf("outline not answered: ok=%v res=%v", ok, res)
	}
	var o outline.Outline
	if err := json.Unmarshal(res.Metadata["result.json"], &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Args) != 1 || o.Args[0].Name != "SOURCE_DATE_EPOCH" || o.Args[0].Value != "0" {
		t.Errorf("args = %+v, want SOURCE_DATE_EPOCH with default 0", o.Args)
	}
	for _, want := range []string{"2 allotments", "registry.example.com/runtime:v1", "--build-context base="} {
		if !strings.Contains(o.Description, want) {
			t.Errorf("description %q lacks %q", o.Description, want)
		}
	}
	if txt := string(res.Metadata["result.txt"]); !strings.Contains(txt, "SOURCE_DATE_EPOCH") {
		t.Errorf("result.txt lacks the build arg:\n%s", txt)
	}
}

func TestSubrequestTargets(t *testing.T) {
	res, ok := subrequest(t, targets.SubrequestsTargetsDefinition.Name)
	if !ok || res == nil {
		t.Fatalf("targets not answered: ok=%v res=%v", ok, res)
	}
	var l targets.List
	if err := json.Unmarshal(res.Metadata["result.json"], &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Targets) != 1 || !l.Targets[0].Default || l.Targets[0].Base != "registry.example.com/runtime:v1" {
		t.Fatalf("targets = %+v", l.Targets)
	}
	if loc := l.Targets[0].Location; loc == nil || loc.Ranges[0].Start.Line != 2 {
		t.Errorf("target location = %v, want line 2 (the base key)", loc)
	}
}

func TestSubrequestDescribe(t *testing.T) {
	res, ok := subrequest(t, subrequests.RequestSubrequestsDescribe)
	if !ok {
		t.Fatal("describe not answered")
	}
	var all []subrequests.Request
	if err := json.Unmarshal(res.Metadata["result.json"], &all); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range all {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "frontend.outline,frontend.targets,frontend.subrequests.describe" {
		t.Errorf("described %s", got)
	}
}

func TestNoSubrequestIsABuild(t *testing.T) {
	if res, ok := subrequest(t, ""); ok || res != nil {
		t.Fatalf("a build without requestid was answered as a subrequest: %v", res)
	}
}

func TestUnknownSubrequestFails(t *testing.T) {
	bc, err := dockerui.NewClient(optsClient{opts: map[string]string{"requestid": "frontend.lint"}})
	if err != nil {
		t.Fatal(err)
	}
	desc, _ := descriptor.Parse("2dfs.json", []byte(subrequestDescriptor))
	if _, _, err := handleSubrequest(context.Background(), bc, desc, nil); err == nil || !strings.Contains(err.Error(), "frontend.lint") {
		t.Fatalf("lint subrequest: got %v, want an unsupported-subrequest error naming it", err)
	}
}
