// Package testenv is the environment the end-to-end tests (tests/) and the
// benchmark (bench/cmd/2dfs-bench) share: the real daemons started through
// hack/daemons, processes the caller owns (2dfs-proxy, extra registries,
// redis-server), free loopback ports, waiting for readiness, the reader of
// BuildKit's plain progress, registry request headers and base images.
//
// It returns errors instead of taking a *testing.T, so a command can use it
// as well as a test; the tests wrap it in helpers that fail the test.
package testenv
