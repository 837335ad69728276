# Unpacks one .deb ($1) into /out, a layer of its own, with dpkg-deb -x
# (maintainer scripts do not run; docs/cir.md). On a merged-/usr base
# (MERGED_USR=1: /bin, /lib ... are symlinks into /usr) the package's /bin,
# /sbin and /lib* go under /usr, or the layer's folders would hide the
# base's symlinks.
#
# DPKG_FILTERS holds the base's dpkg path-exclude and path-include lines
# (cir.DpkgFilters): dpkg-deb -x reads no configuration, so they are
# applied by dpkgfilter.py to the package's own files, unpacked apart, as
# apt-get install in the base would have, before they join /out (a group's
# earlier packages).
set -eu
if [ -n "${DPKG_FILTERS:-}" ] && [ -z "$(ls -A /out)" ]; then
  # The layer's first (or only) package: filtered where it lands.
  dpkg-deb -x "$1" /out
  python3 /2dfs/dpkgfilter.py /out
elif [ -n "${DPKG_FILTERS:-}" ]; then
  x=$(mktemp -d)
  dpkg-deb -x "$1" "$x"
  python3 /2dfs/dpkgfilter.py "$x"
  # dpkg-deb -x is tar -x too: the package joins /out as it would have.
  tar -C "$x" -cf "$x.tar" .
  tar -C /out -xf "$x.tar"
  rm -rf "$x" "$x.tar"
else
  dpkg-deb -x "$1" /out
fi
if [ "${MERGED_USR:-0}" = 1 ]; then
  for d in bin sbin lib lib32 lib64 libx32; do
    if [ -d "/out/$d" ] && [ ! -L "/out/$d" ]; then
      mkdir -p "/out/usr/$d"
      cp -a "/out/$d/." "/out/usr/$d/"
      rm -rf "/out/$d"
    fi
  done
fi
# Folder times are what the extraction and the moves left: set them all to
# EPOCH, so the same package gives the same layer. File times are the .deb's.
find /out -type d -exec touch -h -d "@$EPOCH" {} +
