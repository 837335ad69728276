package frontend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	commonexptypes "github.com/moby/buildkit/exporter/exptypes"
	"github.com/moby/buildkit/frontend/gateway/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

func TestContextImage(t *testing.T) {
	if ref, err := contextImage("cir", "docker-image://registry.example/app:cir"); err != nil || ref != "registry.example/app:cir" {
		t.Fatalf("got %q %v", ref, err)
	}
	for _, v := range []string{"oci-layout://x", "registry.example/app:cir", "docker-image://", "docker-image://bad ref"} {
		if _, err := contextImage("cir", v); err == nil || !strings.Contains(err.Error(), `the "cir" named context`) {
			t.Errorf("%q: got %v", v, err)
		}
	}
}

// A platform-specific cir context is refused rather than ignored (which
// would build the descriptor instead).
func TestDeployFromContextPerPlatform(t *testing.T) {
	_, ok, err := deployFromContext(context.Background(), optsClient{opts: map[string]string{"context:cir::linux/arm64": "docker-image://r/app:cir"}})
	if !ok || err == nil || !strings.Contains(err.Error(), "a CIR is platform-independent") {
		t.Fatalf("ok %v, err %v", ok, err)
	}
	if _, ok, err := deployFromContext(context.Background(), optsClient{opts: map[string]string{"context:base": "docker-image://r/base"}}); ok || err != nil {
		t.Fatalf("without a cir context: ok %v, err %v", ok, err)
	}
}

func TestTargetPlatforms(t *testing.T) {
	host := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	if got := targetPlatforms(nil, host); len(got) != 1 || got[0].Architecture != "amd64" {
		t.Fatalf("default: %v", got)
	}
	got := targetPlatforms([]ocispec.Platform{{OS: "linux", Architecture: "aarch64"}, {OS: "linux", Architecture: "arm64"}, host}, host)
	if len(got) != 2 || got[0].Architecture != "arm64" || got[1].Architecture != "amd64" {
		t.Fatalf("got %v: want arm64 once (normalized), then amd64", got)
	}
}

func testRecord() *cir.Record {
	return cir.NewRecord(&descriptor.Dependencies{Apt: []descriptor.AptPackage{{Name: "python3"}}}, nil, cir.Base{Ref: "r/debian@sha256:" + strings.Repeat("a", 64), Platforms: []cir.BasePlatform{
		{Platform: "linux/amd64", Config: "sha256:" + strings.Repeat("b", 64)},
	}})
}

func TestCheckPinnedListsEveryMissingPlatform(t *testing.T) {
	rec := testRecord()
	targets := []ocispec.Platform{{OS: "linux", Architecture: "riscv64"}, {OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "s390x"}}
	err := checkPinned(rec, targets)
	if err == nil || !strings.Contains(err.Error(), "was pinned for linux/amd64 at pre-build, not for linux/riscv64, linux/s390x; pre-build the CIR with --platform linux/riscv64,linux/s390x") {
		t.Fatalf("got %v", err)
	}
	if err := checkPinned(rec, targets[1:2]); err != nil {
		t.Fatal(err)
	}
}

func TestCIRRequest(t *testing.T) {
	value, err := testRecord().Encode()
	if err != nil {
		t.Fatal(err)
	}
	img := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	img.Config.Labels = map[string]string{cir.LabelKey: value}
	img.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("app layer")}}
	img.History = []ocispec.History{{Comment: field.HistoryComment(field.Cell{})}}
	config, _ := json.Marshal(img)
	config, err = field.NewRecord(0, []field.RecordedAllotment{{Row: 0, Col: 0, Layer: 0, Dst: []string{"/app"}}}).Embed(config)
	if err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromString("manifest")
	req, err := CIRRequest("127.0.0.1:5000/cir/app:v1", dgst, config)
	if err != nil {
		t.Fatal(err)
	}
	if req.CIR != "127.0.0.1:5000/cir/app@"+dgst.String() || req.CIRPlatform.Architecture != "amd64" || req.Record.Base.Ref != testRecord().Base.Ref || len(req.AppRecord.Allotments) != 1 {
		t.Fatalf("got %+v", req)
	}

	plain, _ := json.Marshal(ocispec.Image{Platform: img.Platform})
	if _, err := CIRRequest("r/app:v1", dgst, plain); err == nil || err.Error() != `r/app:v1 is not a CIR: its config has no org.2dfs.cir label (build it from a descriptor with "dependencies")` {
		t.Fatalf("not a CIR: %v", err)
	}
}

type fakeRef struct {
	client.Reference
	id string
}

func TestMergePlatforms(t *testing.T) {
	targets := []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	var results []*client.Result
	for _, p := range targets {
		r := client.NewResult()
		r.SetRef(fakeRef{id: p.Architecture})
		r.AddMeta(exptypes.ExporterImageConfigKey, []byte(`{"architecture":"`+p.Architecture+`"}`))
		r.AddMeta(commonexptypes.ExporterEpochKey, []byte("0"))
		results = append(results, r)
	}
	out, err := mergePlatforms(targets, results)
	if err != nil {
		t.Fatal(err)
	}
	if out.Ref != nil || len(out.Refs) != 2 || out.Refs["linux/arm64"].(fakeRef).id != "arm64" {
		t.Fatalf("refs %v", out.Refs)
	}
	if got := string(out.Metadata[exptypes.ExporterImageConfigKey+"/linux/amd64"]); got != `{"architecture":"amd64"}` {
		t.Errorf("amd64 config %s", got)
	}
	var ps exptypes.Platforms
	if err := json.Unmarshal(out.Metadata[exptypes.ExporterPlatformsKey], &ps); err != nil || len(ps.Platforms) != 2 || ps.Platforms[1].ID != "linux/arm64" {
		t.Errorf("platforms %s (%v)", out.Metadata[exptypes.ExporterPlatformsKey], err)
	}
	if string(out.Metadata[commonexptypes.ExporterEpochKey]) != "0" {
		t.Error("no epoch")
	}
}
