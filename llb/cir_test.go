package llb

import (
	"strings"
	"testing"

	bkllb "github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
)

func TestAssembleLayout(t *testing.T) {
	base := &dockerspec.DockerOCIImage{}
	base.OS, base.Architecture = "linux", "arm64"
	base.RootFS.DiffIDs = []digest.Digest{digest.FromString("base")}
	base.History = []ocispec.History{{CreatedBy: "debootstrap"}}
	base.Config.Cmd = []string{"bash"}
	interp := cir.Interpreter{Version: "3.11", DebianRelease: "12"}
	wheels := []cir.Wheel{
		{Name: "a", Version: "1", URL: "http://idx/files/a-1-py3-none-any.whl", Digest: digest.FromString("a"), Filename: "a-1-py3-none-any.whl"},
		{Name: "b", Version: "2", URL: "http://idx/files/b-2-py3-none-any.whl", Digest: digest.FromString("b"), Filename: "b-2-py3-none-any.whl"},
	}
	helper := bkllb.Image("helper")
	var layers []bkllb.State
	for _, w := range wheels {
		layers = append(layers, WheelLayer(w, helper, interp, "", DefaultEpoch))
	}
	ep := []string{"python3", "/app/main.py"}
	res, err := Assemble(AssembleOptions{
		Base: bkllb.Image("base"), BaseImage: base, App: bkllb.Image("cir"),
		AppRecord: field.NewRecord(0, []field.RecordedAllotment{{Row: 0, Col: 0, Dst: []string{"/app"}}, {Row: 1, Col: 3, Dst: []string{"/data"}}}),
		Wheels:    wheels, WheelLayers: layers, SitePackage: interp.SitePackages(),
		Config:   cir.Config{Entrypoint: &ep, Env: []string{"A=1"}},
		Resolved: &cir.Resolved{Version: cir.ResolvedVersion, CIR: "r/cir@sha256:x", Platform: "linux/arm64"},
		Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, Epoch: DefaultEpoch,
	})
	if err != nil {
		t.Fatal(err)
	}
	var cells []string
	for _, a := range res.Record.Allotments {
		cells = append(cells, a.Cell().String()+"@"+string(rune('0'+a.Layer)))
	}
	if got := strings.Join(cells, " "); got != "1,0@1 1,1@2 2,0@3 3,3@4" || res.Record.BaseLayers != 1 {
		t.Fatalf("layout %s (base %d): want wheels on row 1 after the base, the app from row 2", got, res.Record.BaseLayers)
	}
	img := res.Image
	if img.Config.Cmd != nil || img.Config.Entrypoint[0] != "python3" || img.Config.Env[0] != "A=1" {
		t.Errorf("config %+v", img.Config)
	}
	if h := img.History; len(h) != 5 || h[1].Comment != field.HistoryComment(field.Cell{Row: 1, Col: 0}) || !strings.Contains(h[2].CreatedBy, "wheel b 2") || h[4].Comment != "2dfs allotment 3,3" {
		t.Errorf("history %+v", h)
	}
	if v := img.Config.Labels[cir.ResolvedLabelKey]; !strings.Contains(v, `"platform":"linux/arm64"`) {
		t.Errorf("resolved label %q", v)
	}
	// The wheel layers are fetched pinned by digest and unpacked each on
	// its own: the LLB holds two HTTP sources with their checksums.
	opsByDigest, _, _ := ops(t, res.State)
	var pinned []string
	for _, op := range opsByDigest {
		if s := op.GetSource(); s != nil && strings.HasPrefix(s.Identifier, "http") {
			pinned = append(pinned, s.Attrs["http.checksum"])
		}
	}
	if len(pinned) != 2 || (pinned[0] != wheels[0].Digest.String() && pinned[1] != wheels[0].Digest.String()) {
		t.Errorf("http sources pinned %v", pinned)
	}

	if _, err := Assemble(AssembleOptions{AppRecord: field.NewRecord(1, nil), Epoch: DefaultEpoch}); err == nil {
		t.Error("a CIR record with base layers was accepted")
	}
}
