package main

import (
	"slices"
	"testing"
)

// The registry gets the first half of the CPUs and the builder the rest;
// one CPU cannot be split.
func TestSplitCPUs(t *testing.T) {
	p, err := splitCPUs([]int{0, 1})
	if err != nil || !slices.Equal(p.registry, []int{0}) || !slices.Equal(p.builder, []int{1}) {
		t.Fatalf("2 CPUs: %+v, %v", p, err)
	}
	p, err = splitCPUs([]int{2, 3, 5, 7, 8})
	if err != nil || !slices.Equal(p.registry, []int{2, 3}) || !slices.Equal(p.builder, []int{5, 7, 8}) {
		t.Fatalf("5 CPUs: %+v, %v", p, err)
	}
	if _, err := splitCPUs([]int{0}); err == nil {
		t.Fatal("1 CPU: no error")
	}
}
