package llb

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	bkllb "github.com/moby/buildkit/client/llb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/field"
)

// A wheel that keeps its own layer is the very vertex of an ungrouped
// deploy (same cache key, same blob); a group is one run of wheel.py per
// wheel, in name order, each wheel fetched pinned, the index's header only
// where auth says; the history of the group's layer names every wheel.
func TestWheelGroupLayer(t *testing.T) {
	interp := cir.Interpreter{Version: "3.11", DebianRelease: "12"}
	helper := bkllb.Image("helper")
	var wheels []cir.Wheel
	for _, n := range []string{"alpha", "beta", "gamma"} {
		wheels = append(wheels, cir.Wheel{Name: n, Version: "1", URL: "http://idx/files/" + n + "-1-py3-none-any.whl", Digest: digest.FromString(n), Filename: n + "-1-py3-none-any.whl"})
	}
	auth := func(w cir.Wheel) string {
		if w.Name == "beta" {
			return "pypi-token"
		}
		return ""
	}
	_, _, one := ops(t, WheelGroupLayer(wheels[1:2], helper, interp, auth, DefaultEpoch))
	_, _, own := ops(t, WheelLayer(wheels[1], helper, interp, "pypi-token", DefaultEpoch))
	if one != own {
		t.Errorf("a group of one is %s, its own layer %s: want the same vertex", one, own)
	}

	byDigest, _, _ := ops(t, WheelGroupLayer(wheels, helper, interp, auth, DefaultEpoch))
	var pinned, authed, args []string
	for _, op := range byDigest {
		if s := op.GetSource(); s != nil && strings.HasPrefix(s.Identifier, "http") {
			pinned = append(pinned, s.Attrs["http.checksum"])
			if s.Attrs["http.authheadersecret"] != "" {
				authed = append(authed, s.Identifier)
			}
		}
		if e := op.GetExec(); e != nil {
			args = e.Meta.Args
		}
	}
	slices.Sort(pinned)
	want := []string{wheels[0].Digest.String(), wheels[1].Digest.String(), wheels[2].Digest.String()}
	slices.Sort(want)
	if !slices.Equal(pinned, want) || len(authed) != 1 || authed[0] != wheels[1].URL {
		t.Errorf("sources pinned %v, with the header %v", pinned, authed)
	}
	files := fmt.Sprintf("/in/00000/%s /in/00001/%s /in/00002/%s", wheels[0].Filename, wheels[1].Filename, wheels[2].Filename)
	if got := strings.Join(args, " "); !strings.HasSuffix(got, "/usr/local/lib/python3.11/dist-packages /usr/local/bin 0 "+files) || !strings.Contains(got, "python3 /2dfs/wheel.py") {
		t.Errorf("args %q", got)
	}

	base := &dockerspec.DockerOCIImage{}
	base.OS, base.Architecture = "linux", "amd64"
	base.RootFS.DiffIDs = []digest.Digest{digest.FromString("base")}
	res, err := Assemble(AssembleOptions{
		Base: bkllb.Image("base"), BaseImage: base, App: bkllb.Image("cir"),
		AppRecord: field.NewRecord(0, []field.RecordedAllotment{{Row: 0, Col: 0, Dst: []string{"/app"}}}),
		Wheels:    wheels, WheelGroups: [][]int{{0, 2}, {1}},
		WheelLayers: []bkllb.State{WheelGroupLayer([]cir.Wheel{wheels[0], wheels[2]}, helper, interp, auth, DefaultEpoch), WheelGroupLayer(wheels[1:2], helper, interp, auth, DefaultEpoch)},
		SitePackage: interp.SitePackages(), Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, Epoch: DefaultEpoch,
	})
	if err != nil {
		t.Fatal(err)
	}
	var cells []string
	for _, a := range res.Record.Allotments {
		cells = append(cells, a.Cell().String())
	}
	h := res.Image.History
	if strings.Join(cells, " ") != "1,0 1,1 2,0" || len(h) != 3 || h[0].CreatedBy != fmt.Sprintf("2dfs cir wheel alpha 1 (%s), gamma 1 (%s)", wheels[0].Digest, wheels[2].Digest) || h[1].CreatedBy != fmt.Sprintf("2dfs cir wheel beta 1 (%s)", wheels[1].Digest) {
		t.Errorf("cells %v, history %+v", cells, h)
	}
	if _, err := Assemble(AssembleOptions{AppRecord: field.NewRecord(0, nil), Wheels: wheels, WheelGroups: [][]int{{0, 1, 2}}, Epoch: DefaultEpoch}); err == nil || err.Error() != "assemble: 0 wheel layers for 1 layers of wheels" {
		t.Errorf("groups without layers: %v", err)
	}
}
