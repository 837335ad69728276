# Resolves apt packages ("$@") for the target architecture ARCH against the
# base mounted at /base: its sources, keys and dpkg status, so nothing the
# base has is added again. Run by the lazy-builder in a helper container of
# the build host's architecture: apt treats ARCH as native and only prints
# what it would download; nothing of the target runs. Always exits 0 and
# leaves in /out: status, log, uris (apt-get --print-uris) and unreachable.
#
# Lists and apt's package cache live in APT_STATE (a BuildKit cache mount
# per architecture, locked): apt-get update still asks the archive every
# time, as apt on any machine does, but an unchanged index comes back as
# "Hit" (If-Modified-Since) instead of 15 MB downloaded and parsed again.
set -u
state=${APT_STATE:-/tmp/apt}
mkdir -p /out "$state/lists/partial" "$state/cache/archives/partial" /tmp/apt
o="-o Dir::Etc=/base/etc/apt -o Dir::State::status=/base/var/lib/dpkg/status -o Dir::State::Lists=$state/lists"
o="$o -o Dir::Cache=$state/cache -o Dir::Log=/tmp/apt -o Debug::NoLocking=1 -o Acquire::Retries=0"
o="$o -o APT::Architecture=$ARCH -o APT::Architectures::=$ARCH -o APT::Sandbox::User=root"
# Without it --print-uris may print the MD5 sum alone (seen with a flat
# repository); SHA256 is what the fetch is pinned by.
o="$o -o Acquire::ForceHash=SHA256"
echo "2dfs: apt for $ARCH" >/out/log
apt-get $o update >>/out/log 2>&1
# One line in the deploy's progress: how much of the index was fetched
# (apt's "Fetched N kB in Ts" line; none when nothing changed).
echo "2dfs: apt-get update for $ARCH: $(grep -m1 '^Fetched ' /out/log || echo 'nothing fetched')"
if grep -q '^Err:' /out/log; then
  echo 1 >/out/status
  exit 0
fi
if apt-get $o install -y --no-install-recommends --print-uris "$@" >/out/uris 2>>/out/log; then
  echo 0 >/out/status
else
  echo 1 >/out/status
fi
exit 0
