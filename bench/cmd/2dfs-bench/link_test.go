package main

import (
	"strings"
	"testing"
)

func TestParseShapes(t *testing.T) {
	got, err := parseShapes("veth, 10gbit,1gbit@250us,500mbit,veth@1ms")
	if err != nil {
		t.Fatal(err)
	}
	want := []linkShape{{"veth", "", ""}, {"10gbit", "10gbit", ""}, {"1gbit@250us", "1gbit", "250us"}, {"500mbit", "500mbit", ""}, {"veth@1ms", "", "1ms"}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("shape %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "1gb", "fast", "1gbit@", "1gbit@1s", "veth,,1gbit", "10Gbit"} {
		if _, err := parseShapes(bad); err == nil || !strings.Contains(err.Error(), "-link-shapes") {
			t.Errorf("%q: %v, want an error naming -link-shapes", bad, err)
		}
	}
}

// TestTCBurst: 4 ms of the rate, never under 64 KiB (one GSO packet).
func TestTCBurst(t *testing.T) {
	for rate, want := range map[string]string{"10gbit": "5000000", "1gbit": "500000", "1.5gbit": "750000", "100mbit": "65536", "800kbit": "65536"} {
		if got, err := tcBurst(rate); err != nil || got != want {
			t.Errorf("tcBurst(%s) = %s, %v; want %s", rate, got, err, want)
		}
	}
}
