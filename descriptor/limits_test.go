package descriptor

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// grid writes a JSON descriptor of n allotments, one per line after the
// first, so allotment i is on line i+2.
func grid(n int) []byte {
	var b strings.Builder
	b.WriteString("{\"base\": \"busybox\", \"allotments\": [\n")
	for i := range n {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"src": "s/%d", "dst": "/d/%d", "row": %d, "col": %d}`, i, i, i/1000, i%1000)
	}
	b.WriteString("\n]}\n")
	return []byte(b.String())
}

func TestMaxAllotments(t *testing.T) {
	d, err := Parse("2dfs.json", grid(MaxAllotments))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckLimits(); err != nil {
		t.Fatalf("at the maximum: %v", err)
	}

	// One more is refused, fast, at the allotment past the limit.
	start := time.Now()
	d, err = Parse("2dfs.json", grid(MaxAllotments+1))
	if err != nil {
		t.Fatal(err)
	}
	err = d.CheckLimits()
	if took := time.Since(start); took > raceSlowdown*time.Second {
		t.Errorf("refusing took %v", took)
	}
	want := "2dfs.json:9002:1: allotments[9000] (row 9, col 0): the descriptor has 9001 allotments, over the maximum of 9000"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v\nwant %s...", err, want)
	}
}

func TestCheckImageDescriptors(t *testing.T) {
	d, err := Parse("2dfs.json", grid(4999))
	if err != nil {
		t.Fatal(err)
	}
	if ImageDescriptors(2, 0, 4998) != 10_001 || ImageDescriptors(1, 3, 10) != 15 {
		t.Fatal("ImageDescriptors does not count platforms × (base + allotments + 2) + index")
	}
	if err := d.CheckImageDescriptors(1, 100); err != nil {
		t.Fatalf("one platform: %v", err)
	}
	// Two platforms: 2 × (0 + 4999 + 2) + 1 = 10003. The first allotment
	// without room is the 4998th (index 4997): 2 × (4997 + 2) + 1 = 9999.
	err = d.CheckImageDescriptors(2, 0)
	want := "2dfs.json:4999:1: allotments[4997] (row 4, col 997): 4999 allotments on a base of 0 layers for 2 platform(s) make an image of 10003 descriptors (platforms × (base layers + allotments + 2) + 1 index), over BuildKit's limit of 10000"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v\nwant %s...", err, want)
	}
	// With base layers, the base is where it points.
	err = d.CheckImageDescriptors(2, 7)
	want = "2dfs.json:1:10: 4999 allotments on a base of 7 layers for 2 platform(s) make an image of 10017 descriptors"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v\nwant %s...", err, want)
	}
}
