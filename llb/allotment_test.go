package llb

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	bkllb "github.com/moby/buildkit/client/llb"

	"github.com/tdfs-kit/tdfs/descriptor"
	"github.com/tdfs-kit/tdfs/field"
)

func TestSharedFolders(t *testing.T) {
	for _, c := range []struct {
		dsts []string
		want []string
	}{
		{[]string{"/a.bin"}, nil},
		{[]string{"/a.bin", "/b.bin"}, nil},
		{[]string{"/data/tree"}, nil},
		{[]string{"/data/a.bin", "/data/b.bin"}, []string{"/data"}},
		{[]string{"/data/a.bin", "/data/bin/c.sh", "/data/tree"}, []string{"/data"}},
		{[]string{"/opt/x/bin/s", "/opt/x/sbin/g", "/opt/one.bin"}, []string{"/opt", "/opt/x"}},
		{[]string{"/m/a/b/c/1", "/m/a/b/c/2", "/n/3"}, []string{"/m", "/m/a", "/m/a/b", "/m/a/b/c"}},
	} {
		if got := SharedFolders(c.dsts); !slices.Equal(got, c.want) {
			t.Errorf("SharedFolders(%q) = %q, want %q", c.dsts, got, c.want)
		}
	}
}

// Once every source of an allotment is copied, each folder two or more
// destinations share gets the epoch again: the later copies set its mtime to
// the builder's clock. The action copies an empty folder's contents (from
// scratch) onto it, which in BuildKit's copier sets the time and nothing else.
func TestSharedFoldersGetTheEpoch(t *testing.T) {
	a := descriptor.PlannedAllotment{Cell: field.Cell{Row: 0, Col: 0}, Copies: []descriptor.Copy{
		{Src: "a.bin", Dst: "/data/a.bin"},
		{Src: "c.sh", Dst: "/data/bin/c.sh"},
		{Src: "tree", Dst: "/data/tree", Dir: true},
		{Src: "s", Dst: "/opt/x/s"},
		{Src: "g", Dst: "/opt/x/g"},
	}}
	epoch := DefaultEpoch
	all, _, head := ops(t, AllotmentState(a, bkllb.Local("context"), epoch))
	file := all[head].GetFile()
	if file == nil || len(all[head].Inputs) != 1 {
		t.Fatalf("allotment is %v, want one FileOp reading the context only", all[head])
	}
	if len(file.Actions) != len(a.Copies)+3 {
		t.Fatalf("%d actions, want %d copies and 3 re-stamps", len(file.Actions), len(a.Copies))
	}
	for j, dir := range []string{"/data", "/opt", "/opt/x"} {
		act := file.Actions[len(a.Copies)+j]
		cp := act.GetCopy()
		if cp == nil || cp.Src != "/" || cp.Dest != dir || !cp.DirCopyContents || cp.Timestamp != epoch.UnixNano() {
			t.Fatalf("re-stamp %d = %v, want a copy of scratch / onto %s with the epoch", j, act, dir)
		}
		// Scratch is no input: the copier reads an empty folder.
		if act.SecondaryInput != -1 || act.Input != int64(len(all[head].Inputs)+len(a.Copies)+j-1) {
			t.Errorf("re-stamp %s reads input %d secondary %d", dir, act.Input, act.SecondaryInput)
		}
	}
}

// Options.NoCache marks exactly the allotments it names to ignore the cache.
func TestConvertNoCache(t *testing.T) {
	res, err := Convert(planned(), Options{
		Context:  bkllb.Local("context"),
		Base:     bkllb.Scratch(),
		Platform: amd64,
		Epoch:    DefaultEpoch,
		NoCache:  func(c field.Cell) bool { return c == field.Cell{Row: 0, Col: 1} },
	})
	if err != nil {
		t.Fatal(err)
	}
	def, err := res.State.Marshal(context.Background(), bkllb.Platform(amd64))
	if err != nil {
		t.Fatal(err)
	}
	ignored := map[string]bool{}
	for _, m := range def.Metadata {
		if name := m.Description["llb.customname"]; strings.HasPrefix(name, "[2dfs ") {
			ignored[name[:strings.Index(name, "]")+1]] = m.IgnoreCache
		}
	}
	want := map[string]bool{"[2dfs 0,0]": false, "[2dfs 0,1]": true, "[2dfs 2,0]": false}
	if !maps.Equal(ignored, want) {
		t.Fatalf("ignore-cache by vertex = %v, want %v", ignored, want)
	}
}
