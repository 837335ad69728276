package frontend

import (
	"fmt"
	"strings"

	"github.com/tdfs-kit/tdfs/cir"
	"github.com/tdfs-kit/tdfs/llb"
)

// pipFailure reads why resolve.sh failed (read gives its files), or nil
// when it resolved. The index is named without credentials.
func pipFailure(o llb.ResolveOptions, read func(string) string) error {
	index := cir.Redact(o.Index)
	if strings.TrimSpace(read("/nosecret")) != "" {
		return fmt.Errorf("pip: the CIR's index %s needs the BuildKit secret %q (its pipAuthSecret), which this deploy was not given; pass it with --secret id=%s,src=FILE (a file holding the whole Authorization header value)",
			index, o.AuthSecret, o.AuthSecret)
	}
	if strings.TrimSpace(read("/badsecret")) != "" {
		return fmt.Errorf("pip: the secret %q for the index %s holds a line break, which an Authorization header cannot carry; write the file without one (printf '%%s' \"Bearer …\" >FILE)", o.AuthSecret, index)
	}
	if why := strings.TrimSpace(read("/denied")); why != "" {
		if o.AuthSecret != "" {
			return fmt.Errorf("pip: index %s answered %s to the Authorization header of the secret %q; check the secret's value (the whole header value, e.g. \"Basic …\" or \"Bearer …\")", index, why, o.AuthSecret)
		}
		return fmt.Errorf("pip: index %s answered %s; an index that needs credentials is named with \"pipAuthSecret\" in the descriptor's dependencies, and its secret passed to deploy with --secret", index, why)
	}
	if why := strings.TrimSpace(read("/unreachable")); why != "" {
		return fmt.Errorf("pip: index %s cannot be reached: %s", index, why)
	}
	if strings.TrimSpace(read("/status")) != "0" {
		return cir.ResolveError(o.Platform, o.Index, cir.ParseMissing(read("/missing")), read("/log"))
	}
	if why := strings.TrimSpace(read("/nosize")); why != "" {
		return fmt.Errorf("pip: the size of a wheel (which the layer budget groups by) could not be read from the index: %s", strings.ReplaceAll(why, "\n", "; "))
	}
	return nil
}

// wheelAuth is the secret whose Authorization header the fetch of w sends:
// the index's, for a wheel on the index's own origin only, as pip sends
// index credentials; a wheel elsewhere (a CDN) is fetched without it, so
// the header never leaves for another host.
func wheelAuth(r cir.Resolver, w cir.Wheel) string {
	if r.PipAuthSecret == "" || cir.Origin(w.URL) != cir.Origin(r.PipIndex) {
		return ""
	}
	return r.PipAuthSecret
}
