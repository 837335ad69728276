# Resolves apt packages ("$@") for the target architecture ARCH against the
# base mounted at /base: its sources, keys and dpkg status, so nothing the
# base has is added again. Run by the lazy-builder in a helper container of
# the build host's architecture: apt treats ARCH as native and only prints
# what it would download; nothing of the target runs. Always exits 0 and
# leaves in /out: status, log, uris (apt-get --print-uris) and unreachable.
#
# Lists and apt's package cache live in APT_STATE (a BuildKit cache mount
# per architecture, locked): apt-get update still asks the archive every
# time, as apt on any machine does, but an unchanged index is not
# downloaded again (apt fetches the small InRelease and only the indexes
# whose hashes changed). A resolution is kept there too, under a key of
# everything apt's answer depends on (the lists as apt left them, the
# base's apt configuration and dpkg status, apt's version, the
# architecture and the packages asked for): the same inputs give the same
# answer, so a deploy whose index did not change takes the earlier one
# instead of running apt's solver again.
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
# Bump when what this script asks apt changes.
recipe=1
key=$( {
  echo "$recipe $ARCH"; printf '%s\n' "$@"
  apt-get --version | head -n 1
  ls -ln --time-style=+%s "$state/lists" | grep -v -e ' partial$' -e ' lock$'
  sha256sum /base/var/lib/dpkg/status
  find /base/etc/apt -type f -o -type l | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done
} 2>&1 | sha256sum | cut -c1-64)
memo=$state/resolutions/$key
mkdir -p "$state/resolutions"
if [ -s "$memo" ]; then
  cp "$memo" /out/uris
  echo "2dfs: apt resolution for $ARCH taken from an earlier deploy with the same index, base and packages" | tee -a /out/log
  touch "$memo"
  echo 0 >/out/status
  exit 0
fi
if apt-get $o install -y --no-install-recommends --print-uris "$@" >/out/uris 2>>/out/log; then
  cp /out/uris "$memo.tmp" && mv "$memo.tmp" "$memo"
  # The newest 64 resolutions are kept.
  ls -t "$state/resolutions" | tail -n +65 | while read -r f; do rm -f "$state/resolutions/$f"; done
  echo 0 >/out/status
else
  echo 1 >/out/status
fi
exit 0
