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
# its tests), skopeo (a second pull client in the proxy tests),
# qemu-user-static (runs linux/arm64 images and bootstraps the arm64 Debian
# base; registered in binfmt_misc below, where the kernel allows it). The BuildKit,
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
# debootstrap makes the Debian base of the CIR tests (hack/debian-base);
# dpkg-scanpackages indexes their local apt repository.
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
[ -x /bin/busybox ] && /bin/busybox --help 2>&1 | grep -q static || dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
# qemu-user-static: arm64 images run under user emulation (the CIR tests).
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)

# binfmt_misc entry for aarch64, the one Debian's qemu-user-static ships
# (/usr/lib/binfmt.d/qemu-aarch64.conf). Its F flag makes the kernel open
# the interpreter when the entry is registered, so it also works inside the
# mount namespaces of containers (runc, containerd), where
# /usr/libexec/qemu-binfmt is not visible. Written straight to the register
# file rather than with binfmt-support or systemd-binfmt, which need a
# running init and are absent in CI containers.
binfmt=/proc/sys/fs/binfmt_misc
binfmt_ok() { [ -r $binfmt/qemu-aarch64 ] && grep -qx enabled $binfmt/qemu-aarch64 && grep -q '^flags: .*F' $binfmt/qemu-aarch64; }
register_binfmt() {
  local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  binfmt_ok && return 0
  if [ ! -w $binfmt/register ]; then
    mount -t binfmt_misc binfmt_misc $binfmt 2>/dev/null || {
      echo "hack/tools.sh: cannot mount binfmt_misc on $binfmt (the kernel or the container refuses it; needs root and CAP_SYS_ADMIN): linux/arm64 images will not run here" >&2
      return 1
    }
  fi
  [ -r "$conf" ] || { echo "hack/tools.sh: $conf is missing (qemu-user-static not installed?)" >&2; return 1; }
  # An entry without the F flag (from binfmt-support) would not work in
  # containers: replace it.
  [ -e $binfmt/qemu-aarch64 ] && echo -1 >$binfmt/qemu-aarch64
  grep -v '^#' "$conf" >$binfmt/register 2>/dev/null || {
    echo "hack/tools.sh: the kernel refused the aarch64 entry of $conf in $binfmt/register: linux/arm64 images will not run here" >&2
    return 1
  }
  binfmt_ok || { echo "hack/tools.sh: $binfmt/qemu-aarch64 is not enabled with flag F after registering it" >&2; return 1; }
}

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
# Not fatal: everything but running arm64 images works without it, and the
# tests that need it say so.
register_binfmt || true

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
