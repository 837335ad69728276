package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/tdfs-kit/tdfs/cir"
)

// renderCIR prints what a CIR holds besides its application allotments:
// the base it is assembled on, its direct dependencies and the resolver.
func renderCIR(w io.Writer, r *cir.Record) {
	fmt.Fprintf(w, "CIR (record v%d): the application only; assemble it with 2dfs deploy REF --platform P\n", r.Version)
	fmt.Fprintf(w, "  base: %s\n  base platforms: %s\n", r.Base.Ref, strings.Join(r.PlatformNames(), ", "))
	if len(r.Dependencies.Apt) > 0 {
		fmt.Fprintf(w, "  apt (%d direct): %s\n", len(r.Dependencies.Apt), strings.Join(r.Dependencies.Apt, " "))
	}
	if len(r.Dependencies.Pip) > 0 {
		index := r.Resolver.PipIndex
		if r.Resolver.PipAuthSecret != "" {
			index += ", Authorization from secret " + r.Resolver.PipAuthSecret
		}
		fmt.Fprintf(w, "  pip (%d direct, from %s): %s\n", len(r.Dependencies.Pip), index, strings.Join(r.Dependencies.Pip, " "))
	}
}
