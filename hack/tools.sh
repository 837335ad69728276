#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine and
# prints the folder of the pinned tool binaries.
#
#   hack/tools.sh            # install, build, print the bin folder
#   hack/tools.sh --check    # install nothing: list what is missing, exit 1 if anything is
#
# Debian packages: runc (buildkitd's OCI worker), containerd (ctr pulls and
# runs images in the tests), busybox-static (the base images we make, since
# no public registry is reachable), redis-server (the proxy's shared store in
# its tests), skopeo (a second pull client in the proxy tests). The BuildKit,
# buildx, registry, crane and staticcheck binaries and the OCI
# distribution-spec conformance test (built with go test -c) are pinned in hack/tools/go.mod
# and built once per version into ${TDFS_CACHE:-~/.cache/tdfs}; a cold build
# takes a few minutes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need=()
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need+=(runc)
command -v containerd >/dev/null || need+=(containerd)
command -v docker >/dev/null || need+=(docker.io)
command -v redis-server >/dev/null || need+=(redis-server)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /bin/busybox ] && /bin/busybox --help 2>&1 | grep -q static || dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)

# Bump recipe when the way the tools are built changes.
recipe=2
key=$( (echo "$recipe"; cat "$root/hack/tools/go.mod" "$root/hack/tools/go.sum") | sha256sum | cut -c1-16)
version() { awk -v m="$1" '$1 == m { print $2 }' "$root/hack/tools/go.mod"; }
bin=${TDFS_CACHE:-$HOME/.cache/tdfs}/tools-$key

if [ "${1:-}" = --check ]; then
  [ -x "$bin/staticcheck" ] || need+=("the pinned tools in $bin")
  [ ${#need[@]} -eq 0 ] || { echo "${need[*]}"; exit 1; }
  exit 0
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "hack/tools.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

if [ ! -x "$bin/staticcheck" ]; then
  echo "hack/tools.sh: building pinned buildkitd, buildctl, registry, buildx, crane, staticcheck, conformance.test into $bin (a few minutes, once)" >&2
  mkdir -p "$bin.tmp"
  # Stamp the versions: buildx turns features on by the BuildKit version it sees.
  bk=$(version github.com/moby/buildkit) bx=$(version github.com/docker/buildx) reg=$(version github.com/distribution/distribution/v3)
  (cd "$root/hack/tools" &&
    go build -ldflags "-X github.com/moby/buildkit/version.Version=$bk" -o "$bin.tmp/" \
      github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl &&
    go build -ldflags "-X github.com/distribution/distribution/v3/version.version=$reg" -o "$bin.tmp/" \
      github.com/distribution/distribution/v3/cmd/registry &&
    go build -ldflags "-X github.com/docker/buildx/version.Version=$bx" -o "$bin.tmp/" \
      github.com/docker/buildx/cmd/buildx &&
    go build -o "$bin.tmp/" github.com/google/go-containerregistry/cmd/crane honnef.co/go/tools/cmd/staticcheck &&
    go test -c -o "$bin.tmp/conformance.test" github.com/opencontainers/distribution-spec/conformance) >&2
  rm -rf "$bin" && mv "$bin.tmp" "$bin"
fi
echo "$bin"
