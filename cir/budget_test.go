package cir

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func pool(name, source string, size int64) Deb {
	return Deb{Name: name, Size: size, URL: fmt.Sprintf("http://deb.debian.org/debian/pool/main/%c/%s/%s_1_amd64.deb", source[0], source, name)}
}

// closure makes n packages with sizes spread over four orders of
// magnitude, sorted by name as ParseURIs returns them.
func closure(r *rand.Rand, prefix string, n int) []Deb {
	var debs []Deb
	for i := 0; i < n; i++ {
		src := fmt.Sprintf("%ssrc%d", prefix, i/3) // three packages a source
		debs = append(debs, pool(fmt.Sprintf("%spkg%03d", prefix, i), src, int64(r.Intn(4000))<<r.Intn(12)))
	}
	return sortDebs(debs)
}

func sortDebs(debs []Deb) []Deb {
	slices.SortFunc(debs, func(a, b Deb) int { return strings.Compare(a.Name, b.Name) })
	return debs
}

func members(debs []Deb, p LayerPlan) []string {
	var out []string
	for _, g := range p.Groups {
		var names []string
		for _, i := range g {
			names = append(names, debs[i].Name)
		}
		out = append(out, strings.Join(names, "+"))
	}
	return out
}

func TestPlanLayersWithinBudget(t *testing.T) {
	debs := closure(rand.New(rand.NewSource(1)), "", 10)
	p, err := PlanLayers(debs, 10)
	if err != nil || p.Grouped() || len(p.Groups) != 10 {
		t.Fatalf("%v %+v: want one layer per package", err, p)
	}
	for i, g := range p.Groups {
		if g[0] != i {
			t.Fatalf("layer %d holds package %d: want the layers in name order", i, g[0])
		}
	}
	if _, err := PlanLayers(debs, 0); err == nil || err.Error() != "the layer budget leaves no layer for the 10 apt packages" {
		t.Errorf("no slot: %v", err)
	}
}

// Over the budget: never more layers than slots, every package in exactly
// one layer, members and layers in name order, and the same plan each
// time.
func TestPlanLayersBudget(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, n := range []int{2, 5, 40, 133, 300} {
		debs := closure(r, "", n)
		for _, slots := range []int{1, 2, 3, 7, 16, 33, 90, n - 1} {
			if slots < 1 || slots >= n {
				continue
			}
			p, err := PlanLayers(debs, slots)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Groups) > slots || !p.Grouped() {
				t.Fatalf("%d packages in %d slots: %d layers", n, slots, len(p.Groups))
			}
			seen := map[int]bool{}
			for gi, g := range p.Groups {
				if !slices.IsSorted(g) || (gi > 0 && p.Groups[gi-1][0] >= g[0]) {
					t.Fatalf("groups out of order: %v", p.Groups)
				}
				for _, i := range g {
					if seen[i] {
						t.Fatalf("package %d twice", i)
					}
					seen[i] = true
					if len(g) > 1 && debs[i].Size >= p.Threshold {
						t.Fatalf("package of %d bytes grouped at threshold %d", debs[i].Size, p.Threshold)
					}
				}
			}
			if len(seen) != n {
				t.Fatalf("%d of %d packages placed", len(seen), n)
			}
			again, _ := PlanLayers(slices.Clone(debs), slots)
			if !reflect.DeepEqual(p, again) {
				t.Fatalf("two plans of one closure differ")
			}
		}
	}
}

// Two applications that share packages: the large shared packages are
// layers of their own in both, a small package's bucket depends on its
// source alone, and the packages of one source share their layer.
func TestPlanLayersSharing(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	common := closure(r, "common", 60)
	a := sortDebs(append(slices.Clone(common), closure(r, "a", 50)...))
	b := sortDebs(append(slices.Clone(common), closure(r, "b", 70)...))
	pa, err := PlanLayers(a, 90)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := PlanLayers(b, 90)
	if err != nil {
		t.Fatal(err)
	}
	if !pa.Grouped() || !pb.Grouped() || pa.Buckets != 16 || pb.Buckets != 16 {
		t.Fatalf("plans %+v %+v: want both grouped into 16 buckets", pa, pb)
	}
	// The larger closure may need a higher threshold: the packages over
	// both keep their own layers in both.
	threshold := max(pa.Threshold, pb.Threshold)
	own := func(debs []Deb, p LayerPlan) map[string]bool {
		m := map[string]bool{}
		for _, g := range p.Groups {
			if len(g) == 1 && debs[g[0]].Size >= p.Threshold {
				m[debs[g[0]].Name] = true
			}
		}
		return m
	}
	oa, ob := own(a, pa), own(b, pb)
	shared := 0
	for _, d := range common {
		if d.Size >= threshold {
			if !oa[d.Name] || !ob[d.Name] {
				t.Errorf("%s (%d bytes) has no layer of its own in both", d.Name, d.Size)
			}
			shared++
		}
	}
	if shared == 0 {
		t.Fatal("no common package over the threshold: the test shows nothing")
	}
	bucket := func(debs []Deb, p LayerPlan, name string) []string {
		for _, g := range p.Groups {
			for _, i := range g {
				if debs[i].Name == name {
					var srcs []string
					for _, j := range g {
						srcs = append(srcs, SourceOf(debs[j]))
					}
					return srcs
				}
			}
		}
		return nil
	}
	for _, d := range common {
		if d.Size >= threshold {
			continue
		}
		// Every member of its layer hashes to its bucket in both apps.
		want := bucketOf(SourceOf(d), 16)
		for _, s := range append(bucket(a, pa, d.Name), bucket(b, pb, d.Name)...) {
			if bucketOf(s, 16) != want {
				t.Fatalf("%s shares a layer with source %s of another bucket", d.Name, s)
			}
		}
	}
	// One source, one layer.
	src := []Deb{pool("libgfortran5", "gcc-12", 300), pool("libquadmath0", "gcc-12", 200), pool("big", "big", 1<<20), pool("libgomp1", "gcc-12", 100)}
	sortDebs(src)
	p, _ := PlanLayers(src, 2)
	if got := strings.Join(members(src, p), " "); got != "big libgfortran5+libgomp1+libquadmath0" {
		t.Errorf("layers %s", got)
	}
}

func TestSourceOf(t *testing.T) {
	for u, want := range map[string]string{
		"http://deb.debian.org/debian/pool/main/g/gcc-12/libgfortran5_12.2.0-14_amd64.deb": "gcc-12",
		"http://deb.debian.org/debian/pool/main/libx/libxcb/libxcb1_1.15-1_amd64.deb":      "libxcb",
		"http://127.0.0.1:8080/./hello_1.0_amd64.deb":                                      "hello",
	} {
		if got := SourceOf(Deb{Name: "hello", URL: u}); got != want {
			t.Errorf("%s: %s, want %s", u, got, want)
		}
	}
}
