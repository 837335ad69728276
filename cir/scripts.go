package cir

import _ "embed"

// WheelScript installs one wheel into its own layer (wheel.py).
//
//go:embed wheel.py
var WheelScript string

// ResolveScript resolves pip requirements to wheels (resolve.sh).
//
//go:embed resolve.sh
var ResolveScript string

// AptResolveScript resolves apt packages for a target architecture
// (resolve-apt.sh).
//
//go:embed resolve-apt.sh
var AptResolveScript string

// DebScript unpacks one .deb into its own layer (deb.sh).
//
//go:embed deb.sh
var DebScript string

// AlternativesScript makes the layer of the alternatives links an apt
// closure registers (alternatives.py).
//
//go:embed alternatives.py
var AlternativesScript string
