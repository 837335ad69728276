package registryproxy

// The tag freshness window: a repeated partition tag normally costs one
// upstream HEAD of its base tag (it re-checks the caller and notices a moved
// tag). Within TagFreshness of a successful HEAD for the same caller,
// repository, base tag, selection and Accept, the stored partition is served
// without it, as registries' pull-through caches serve tags for a while
// (Artifactory's metadata retrieval cache period, Nexus's maximum metadata
// age) — here a second or so, not hours.

import "time"

// DefaultTagFreshness is cmd/2dfs-proxy's -tag-freshness.
const DefaultTagFreshness = time.Second

// freshKey is the freshness entry of a caller's repeated tag request.
func freshKey(partKey, authorization string) string {
	return partKey + "\x00" + authHash(authorization)
}
