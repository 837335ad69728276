package llb

import (
	"context"
	"testing"
	"time"

	bkllb "github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/solver/pb"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

var amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}

func planned() []descriptor.PlannedAllotment {
	return []descriptor.PlannedAllotment{
		{Index: 1, Cell: field.Cell{Row: 0, Col: 0}, Copies: []descriptor.Copy{{Src: "a.bin", Dst: "/f/a.bin"}, {Src: "b.bin", Dst: "/f/b.bin"}}},
		{Index: 0, Cell: field.Cell{Row: 0, Col: 1}, Copies: []descriptor.Copy{{Src: "models", Dst: "/models", Dir: true}}},
		{Index: 2, Cell: field.Cell{Row: 2, Col: 0}, Copies: []descriptor.Copy{{Src: "c.bin", Dst: "/c.bin"}}},
	}
}

// ops decodes a marshalled definition into its ops and vertex names, keyed
// by digest, and returns the digest of the final vertex's input.
func ops(t *testing.T, st bkllb.State) (map[digest.Digest]*pb.Op, map[digest.Digest]string, digest.Digest) {
	t.Helper()
	def, err := st.Marshal(context.Background(), bkllb.Platform(amd64))
	if err != nil {
		t.Fatal(err)
	}
	out := map[digest.Digest]*pb.Op{}
	var last *pb.Op
	for _, dt := range def.Def {
		var op pb.Op
		if err := op.UnmarshalVT(dt); err != nil {
			t.Fatal(err)
		}
		out[digest.FromBytes(dt)] = &op
		last = &op
	}
	names := map[digest.Digest]string{}
	for d, m := range def.Metadata {
		names[d] = m.Description["llb.customname"]
	}
	// The last op is the terminal one that points at the result.
	return out, names, digest.Digest(last.Inputs[0].Digest)
}

func TestConvertScratch(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	res, err := Convert(planned(), Options{
		Context:  bkllb.Local("context"),
		Base:     bkllb.Scratch(),
		Platform: amd64,
		Epoch:    epoch,
		Labels:   map[string]string{"org.example": "yes", field.LabelKey: "must be overwritten"},
	})
	if err != nil {
		t.Fatal(err)
	}
	all, names, head := ops(t, res.State)

	merge := all[head].GetMerge()
	if merge == nil {
		t.Fatalf("result is not a merge: %v", all[head])
	}
	if names[head] != "[2dfs] merge 3 allotments onto the base" {
		t.Errorf("merge name = %q", names[head])
	}
	// A scratch base drops out of the merge: the inputs are the allotments
	// in row-major order.
	inputs := all[head].Inputs
	if len(inputs) != 3 {
		t.Fatalf("merge has %d inputs, want 3", len(inputs))
	}
	wantNames := []string{
		"[2dfs 0,0] a.bin -> /f/a.bin, b.bin -> /f/b.bin",
		"[2dfs 0,1] models -> /models",
		"[2dfs 2,0] c.bin -> /c.bin",
	}
	wantCopies := [][]*pb.FileActionCopy{
		{{Src: "/a.bin", Dest: "/f/a.bin"}, {Src: "/b.bin", Dest: "/f/b.bin"}},
		{{Src: "/models", Dest: "/models", DirCopyContents: true}},
		{{Src: "/c.bin", Dest: "/c.bin"}},
	}
	for i, in := range inputs {
		d := digest.Digest(in.Digest)
		if names[d] != wantNames[i] {
			t.Errorf("input %d name = %q, want %q", i, names[d], wantNames[i])
		}
		file := all[d].GetFile()
		if file == nil {
			t.Fatalf("input %d is not a FileOp", i)
		}
		// One FileOp per allotment, on scratch: a single input, the context.
		if len(all[d].Inputs) != 1 || all[digest.Digest(all[d].Inputs[0].Digest)].GetSource().GetIdentifier() != "local://context" {
			t.Errorf("input %d reads from %v, want the local context only", i, all[d].Inputs)
		}
		// Allotment 0,0's two files share /f, which one more action re-stamps
		// (TestSharedFoldersGetTheEpoch checks it).
		if want := len(wantCopies[i]) + len(SharedFolders(planned()[i].Dsts())); len(file.Actions) != want {
			t.Fatalf("input %d has %d actions, want %d", i, len(file.Actions), want)
		}
		for j, a := range file.Actions[:len(wantCopies[i])] {
			cp := a.GetCopy()
			want := wantCopies[i][j]
			if cp == nil || cp.Src != want.Src || cp.Dest != want.Dest || cp.DirCopyContents != want.DirCopyContents {
				t.Fatalf("input %d action %d = %v, want copy %v", i, j, a, want)
			}
			if cp.Timestamp != epoch.UnixNano() {
				t.Errorf("copy %s: timestamp %d, want %d", cp.Src, cp.Timestamp, epoch.UnixNano())
			}
			// A literal, not NormalMode: a weaker normalization must fail here.
			if cp.ModeStr != "a=rX,u+w,a-t" || !cp.CreateDestPath || !cp.FollowSymlink || cp.AllowWildcard {
				t.Errorf("copy %s: options %v", cp.Src, cp)
			}
			if o := cp.Owner; o == nil || o.User.GetByID() != 0 || o.Group.GetByID() != 0 || o.User.GetByName() != nil {
				t.Errorf("copy %s: owner %v, want 0:0", cp.Src, cp.Owner)
			}
			// Allotments with the first file in the first slot: a.bin's
			// action reads input 0 (the context) into scratch (-1).
			if j == 0 && (a.Input != -1 || a.SecondaryInput != 0) {
				t.Errorf("copy %s: input %d secondary %d", cp.Src, a.Input, a.SecondaryInput)
			}
		}
	}

	img := res.Image
	if img.OS != "linux" || img.Architecture != "amd64" || img.RootFS.Type != "layers" || len(img.RootFS.DiffIDs) != 0 {
		t.Errorf("config platform/rootfs = %+v %+v", img.Platform, img.RootFS)
	}
	if img.Created == nil || !img.Created.Equal(epoch) {
		t.Errorf("created = %v", img.Created)
	}
	if len(img.History) != 3 || img.History[1].Comment != "2dfs allotment 0,1" || img.History[1].CreatedBy != "2dfs models -> /models" || !img.History[2].Created.Equal(epoch) {
		t.Errorf("history = %+v", img.History)
	}
	if img.Config.Labels["org.example"] != "yes" {
		t.Errorf("labels = %v", img.Config.Labels)
	}
	if got := img.Config.Labels[field.LabelKey]; got != `{"version":2,"baseLayers":0,"allotments":3}` {
		t.Errorf("label = %s", got)
	}
	rec := res.Record
	if rec.BaseLayers != 0 || len(rec.Allotments) != 3 || rec.Allotments[2].Layer != 2 || rec.Allotments[0].Dst[1] != "/f/b.bin" {
		t.Errorf("record = %+v", rec)
	}
}

func TestConvertOnBase(t *testing.T) {
	base := bkllb.Image("registry.example/base:v1@sha256:0000000000000000000000000000000000000000000000000000000000000000")
	baseImg := &dockerspec.DockerOCIImage{}
	baseImg.OS, baseImg.Architecture = "linux", "arm64"
	baseImg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("l1"), digest.FromString("l2")}}
	baseImg.History = []ocispec.History{{CreatedBy: "one"}, {CreatedBy: "env", EmptyLayer: true}, {CreatedBy: "two"}}
	baseImg.Config.Env = []string{"A=b"}
	baseImg.Config.Labels = map[string]string{"from": "base"}

	res, err := Convert(planned()[:1], Options{Context: bkllb.Local("context"), Base: base, BaseImage: baseImg, Platform: amd64, Epoch: DefaultEpoch})
	if err != nil {
		t.Fatal(err)
	}
	all, _, head := ops(t, res.State)
	inputs := all[head].Inputs
	if all[head].GetMerge() == nil || len(inputs) != 2 {
		t.Fatalf("want a merge of base and one allotment, got %v", all[head])
	}
	if src := all[digest.Digest(inputs[0].Digest)].GetSource(); src == nil || src.Identifier != "docker-image://registry.example/base:v1@sha256:0000000000000000000000000000000000000000000000000000000000000000" {
		t.Fatalf("first merge input is %v, want the base image", all[digest.Digest(inputs[0].Digest)])
	}
	img := res.Image
	if img.Architecture != "arm64" || img.Config.Env[0] != "A=b" || img.Config.Labels["from"] != "base" || len(img.History) != 4 {
		t.Fatalf("base config not carried over: %+v", img)
	}
	if baseImg.Config.Labels[field.LabelKey] != "" || len(baseImg.History) != 3 {
		t.Fatal("Convert modified the base image config")
	}
	if res.Record.BaseLayers != 2 || res.Record.Allotments[0].Layer != 2 {
		t.Fatalf("record = %+v", res.Record)
	}
	// The record checks out against the config the exporter will write.
	diffIDs := []string{"l1", "l2", "allotment"}
	if err := res.Record.Check(diffIDs, img.History); err != nil {
		t.Fatal(err)
	}
}

func TestConvertNoAllotments(t *testing.T) {
	res, err := Convert(nil, Options{Base: bkllb.Scratch(), Platform: amd64, Epoch: DefaultEpoch})
	if err != nil {
		t.Fatal(err)
	}
	if res.State.Output() != nil {
		t.Fatal("an empty field on scratch should be scratch")
	}
	if res.Record.Layers() != 0 {
		t.Fatalf("record = %+v", res.Record)
	}
}

func TestConvertRejectsUnsorted(t *testing.T) {
	p := planned()
	p[0], p[1] = p[1], p[0]
	if _, err := Convert(p, Options{Base: bkllb.Scratch(), Context: bkllb.Local("context"), Platform: amd64}); err == nil {
		t.Fatal("want an error for allotments out of row-major order")
	}
}

// An allotment's FileOp carries no platform and the same actions whatever
// the target platform: BuildKit's cache key for a copy is the op plus the
// content of what it copies, so every platform shares the allotment's layer.
func TestAllotmentStateIsPlatformIndependent(t *testing.T) {
	st := AllotmentState(planned()[0], bkllb.Local("context"), DefaultEpoch)
	var got []*pb.Op
	for _, p := range []ocispec.Platform{amd64, {OS: "linux", Architecture: "arm64"}} {
		def, err := st.Marshal(context.Background(), bkllb.Platform(p))
		if err != nil {
			t.Fatal(err)
		}
		var op pb.Op
		if err := op.UnmarshalVT(def.Def[len(def.Def)-2]); err != nil {
			t.Fatal(err)
		}
		if op.GetFile() == nil || op.Platform != nil {
			t.Fatalf("op %v: want a FileOp without platform", &op)
		}
		got = append(got, &op)
	}
	if !got[0].GetFile().EqualVT(got[1].GetFile()) {
		t.Fatalf("allotment actions differ across platforms:\n%v\n%v", got[0], got[1])
	}
}
