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

// DpkgFilterScript applies a base's dpkg path filters to an unpacked
// package (dpkgfilter.py).
//
//go:embed dpkgfilter.py
var DpkgFilterScript string

// AlternativesScript makes the layer of the alternatives links an apt
// closure registers (alternatives.py).
//
//go:embed alternatives.py
var AlternativesScript string

// PipDriverScript runs pip for a target platform against the base's
// installed distributions (pipdrv.py).
//
//go:embed pipdrv.py
var PipDriverScript string

// MissingScript lists every requirement of a closure without a wheel, with
// the path that required it (missing.py).
//
//go:embed missing.py
var MissingScript string

// AuthProxyScript forwards pip's requests to an index, adding its
// Authorization header (authproxy.py).
//
//go:embed authproxy.py
var AuthProxyScript string

// SizesScript reads the size of each wheel of pip's report from the index,
// for the layer budget (sizes.py).
//
//go:embed sizes.py
var SizesScript string
