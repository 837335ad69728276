package testenv

import (
	"reflect"
	"testing"
)

// A piece of BuildKit's plain progress, as 2dfs build prints it: allotment
// vertices (one per platform for cell 0,1), one cached, with log and
// sub-step lines in between.
const progress = `#1 [internal] load build definition
#1 DONE 0.0s

#5 [2dfs 0,0] copy /model/a.bin
#5 CACHED

#6 [2dfs 0,1] copy /model/b.bin (linux/arm64)
#6 CACHED
#7 [2dfs 0,1] copy /model/b.bin (linux/amd64)
#7 0.120 some log line
#6 [2dfs 0,1] copy /model/b.bin (linux/arm64)
#7 [2dfs 0,1] copy /model/b.bin (linux/amd64)
#7 DONE 1.5s

#8 [2dfs 1,0] copy /tokenizer
#8 DONE 0.2s

#9 [2dfs base] resolve base
#9 DONE 0.1s

#10 exporting to image
#10 exporting layers 0.3s done
#10 DONE 0.4s
`

func TestVertices(t *testing.T) {
	vs := Vertices(progress)
	var ids []string
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	if want := []string{"1", "5", "6", "7", "8", "9", "10"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("vertex ids %v, want %v", ids, want)
	}
	if six := vs[2]; six.Name != "[2dfs 0,1] copy /model/b.bin (linux/arm64)" || !six.Cached || six.Done {
		t.Errorf("vertex 6: %+v", six)
	}
	if seven := vs[3]; seven.Name != "[2dfs 0,1] copy /model/b.bin (linux/amd64)" || seven.Cached || !seven.Done || seven.Seconds != 1.5 {
		t.Errorf("vertex 7: %+v", seven)
	}
	if ten := vs[6]; ten.Name != "exporting to image" || !ten.Done || ten.Seconds != 0.4 {
		t.Errorf("vertex 10: %+v", ten)
	}
}

func TestAllotmentVertices(t *testing.T) {
	got := AllotmentVertices(progress)
	want := map[string]bool{"0,0": true, "0,1": true, "1,0": false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("AllotmentVertices = %v, want %v", got, want)
	}
	for _, name := range []string{"[2dfs base] resolve", "[2dfs ] x", "[internal] load", "2dfs 0,0"} {
		if cell, ok := AllotmentCell(name); ok {
			t.Errorf("AllotmentCell(%q) = %q, want no cell", name, cell)
		}
	}
}
