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
