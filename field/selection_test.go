package field

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		tag       string
		base      string
		canonical string
	}{
		{"v1--0.0.0.0", "v1", "0.0.0.0"},
		{"latest--1.2.3.4", "latest", "1.2.3.4"},
		{"latest--0.0.1023.1023", "latest", "0.0.1023.1023"},
		{"my--tag--0.1.2.3", "my--tag", "0.1.2.3"},
		{"app--rc.1--0.0.1.1", "app--rc.1", "0.0.1.1"},
		{"_x--0.0.1.1--3.3.4.4", "_x", "0.0.1.1--3.3.4.4"},
		// Canonical form sorts, drops repeats and nested rectangles.
		{"t--3.3.4.4--0.0.1.1", "t", "0.0.1.1--3.3.4.4"},
		{"t--0.0.1.1--0.0.1.1", "t", "0.0.1.1"},
		{"t--0.0.0.0--0.0.5.5", "t", "0.0.5.5"},
		{"t--0.0.2.2--1.1.3.3", "t", "0.0.2.2--1.1.3.3"},
	} {
		base, sel, err := ParseTag(tc.tag)
		if err != nil {
			t.Errorf("ParseTag(%q): %v", tc.tag, err)
			continue
		}
		if base != tc.base || sel.String() != tc.canonical {
			t.Errorf("ParseTag(%q) = %q, %q; want %q, %q", tc.tag, base, sel, tc.base, tc.canonical)
		}
		if !IsPartitionTag(tc.tag) {
			t.Errorf("IsPartitionTag(%q) = false", tc.tag)
		}
		// The canonical tag parses back to the same selection.
		b2, s2, err := ParseTag(sel.Tag(base))
		if err != nil || b2 != base || s2.String() != sel.String() {
			t.Errorf("canonical tag %q does not round trip: %q %q %v", sel.Tag(base), b2, s2, err)
		}
	}
}

func TestParseTagErrors(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		part string // must appear in the error
		why  string // must appear in the error
	}{
		{"v1--1.2.3", "--1.2.3", "four coordinates"},
		{"v1--a.b.c.d", "--a.b.c.d", "not a non-negative decimal"},
		{"v1--1.2.3.4.5", "--1.2.3.4.5", "four coordinates"},
		{"v1--01.0.1.1", "--01.0.1.1", "leading zero"},
		{"v1--+1.0.1.1", "--+1.0.1.1", "not a non-negative"},
		{"v1--0..1.1", "--0..1.1", "empty coordinate"},
		{"v1--2.0.1.1", "--2.0.1.1", "rows are inverted"},
		{"v1--0.2.1.1", "--0.2.1.1", "columns are inverted"},
		{"v1--0.0.1024.1", "--0.0.1024.1", "over 1023"},
		{"v1--0.0.99999999999999999999.1", "--0.0.99999999999999999999.1", "over 1023"},
		{"v1--0.0.1.1--1.2", "--1.2", "four coordinates"},
		{"--0.0.1.1", "", "base tag"},
		{".v1--0.0.1.1", ".v1", "base tag"},
		{"v 1--0.0.1.1", "v 1", "base tag"},
		// "v1----0.0.0.0" could be base "v1--" or a mistyped "v1--0.0.0.0".
		{"v1----0.0.0.0", "v1--", "ends in \"-\""},
		{"v1---0.0.0.0", "v1-", "ends in \"-\""},
		{"v1----0.0.0.0--1.1.1.1", "v1--", "ambiguous"},
		{"v1", "", "no --r1.c1.r2.c2"},
		{"my--tag", "", "no --r1.c1.r2.c2"},
		{"v1" + strings.Repeat("--0.0.1.1", 15), "", "limit is 128"},
	} {
		_, _, err := ParseTag(tc.tag)
		if err == nil {
			t.Errorf("ParseTag(%q) succeeded, want error", tc.tag)
			continue
		}
		var te *TagError
		if !errors.As(err, &te) {
			t.Errorf("ParseTag(%q) error %T is not a *TagError", tc.tag, err)
		}
		if !strings.Contains(err.Error(), tc.part) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseTag(%q) = %q; want it to mention %q and %q", tc.tag, err, tc.part, tc.why)
		}
	}
}

func TestIsPartitionTag(t *testing.T) {
	for tag, want := range map[string]bool{
		"latest":        false,
		"my--tag":       false,
		"app--rc.1":     false,
		"v1--":          false,
		"v1--0.0.1.1":   true,
		"v1--1.2.3":     true, // malformed, but reserved: the proxy answers 400
		"v1--a.b.c.d":   true,
		"app--1.2":      true,
		"v1.0.0.0":      false,
		"x--0.0.1.1--y": false,
	} {
		if got := IsPartitionTag(tag); got != want {
			t.Errorf("IsPartitionTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestSelectionContains(t *testing.T) {
	_, sel, err := ParseTag("t--0.0.1.1--3.2.3.5")
	if err != nil {
		t.Fatal(err)
	}
	in := []Cell{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {3, 2}, {3, 5}}
	out := []Cell{{0, 2}, {2, 0}, {2, 2}, {3, 1}, {3, 6}, {4, 3}}
	for _, c := range in {
		if !sel.Contains(c) {
			t.Errorf("%s should be selected", c)
		}
	}
	for _, c := range out {
		if sel.Contains(c) {
			t.Errorf("%s should not be selected", c)
		}
	}
	if (Selection{}).Contains(Cell{}) {
		t.Error("zero selection selects a cell")
	}
}

func TestNewSelectionLimits(t *testing.T) {
	if _, err := NewSelection(); err == nil {
		t.Error("empty selection accepted")
	}
	many := make([]Rect, MaxRects+1)
	if _, err := NewSelection(many...); err == nil {
		t.Error("too many rectangles accepted")
	}
	if _, err := NewSelection(Rect{Top: -1}); err == nil {
		t.Error("negative coordinate accepted")
	}
}

func FuzzParseTag(f *testing.F) {
	for _, s := range []string{"v1--0.0.1.1", "a--b--0.0.0.0--1.1.2.2", "v1--1.2.3", "v1--a.b.c.d", "x--01.0.1.1", "my--tag"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		base, sel, err := ParseTag(tag)
		if err != nil {
			var te *TagError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *TagError", err)
			}
			return
		}
		if !IsPartitionTag(tag) || !validTag(base) || len(tag) > MaxTagLength {
			t.Fatalf("ParseTag(%q) accepted a tag outside the grammar", tag)
		}
		for _, r := range sel.Rects() {
			if r.Validate() != nil {
				t.Fatalf("ParseTag(%q) returned invalid rect %v", tag, r)
			}
		}
		// The canonical spelling is a fixed point.
		b2, s2, err := ParseTag(sel.Tag(base))
		if err != nil {
			t.Fatalf("canonical tag %q of %q does not parse: %v", sel.Tag(base), tag, err)
		}
		if b2 != base || s2.String() != sel.String() {
			t.Fatalf("canonical tag %q of %q parses to %q %q", sel.Tag(base), tag, b2, s2)
		}
	})
}
