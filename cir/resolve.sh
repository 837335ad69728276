# Resolves pip requirements ("$@") to wheels for a target platform, run by
# the lazy-builder in a helper container of the build host's architecture:
# pip resolves for the tags it is given and runs nothing of the target.
# Settings come in the environment: PYVER, ABI, TAGS, INDEX. It always
# exits 0 and leaves in /out: status (0 or 1), log, report.json (pip's
# installation report) and, on failure, missing (each direct requirement
# pip cannot find a wheel for on its own, so all are named at once).
set -u
mkdir -p /out
echo "2dfs: python $PYVER" >/out/log
set -f
opts="--dry-run --ignore-installed --break-system-packages --target /tmp/target --only-binary=:all:"
for t in $TAGS; do opts="$opts --platform $t"; done
opts="$opts --python-version $PYVER --implementation cp --abi $ABI --abi abi3 --abi none"
opts="$opts --index-url $INDEX --retries 0 --timeout 15 --no-cache-dir --disable-pip-version-check --no-input"
if python3 -m pip install $opts --report /out/report.json "$@" >>/out/log 2>&1; then
  echo 0 >/out/status
  exit 0
fi
echo 1 >/out/status
: >/out/missing
for r in "$@"; do
  python3 -m pip install $opts --no-deps "$r" >/out/one.log 2>&1 && continue
  grep -q "No matching distribution\|Could not find a version" /out/one.log && echo "$r" >>/out/missing
done
rm -f /out/one.log
exit 0
