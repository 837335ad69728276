# Resolves pip requirements ("$@") to wheels for a target platform, run by
# the lazy-builder in a helper container of the build host's architecture:
# pip resolves for the tags it is given and runs nothing of the target.
# Settings come in the environment: PYVER, ABI, TAGS, INDEX. It always
# exits 0 and leaves in /out: status (0 or 1), log, report.json (pip's
# installation report), unreachable (why the index cannot be reached, or
# empty) and, on failure, missing (each direct requirement pip cannot find
# a wheel for on its own, so all are named at once).
set -u
mkdir -p /out
echo "2dfs: python $PYVER" >/out/log
set -f
# pip says only "no matching distribution" when the index cannot be
# reached, so the index is probed first (an HTTP error status counts as
# reached: some indexes serve no root page).
python3 - "$INDEX" >/out/unreachable 2>&1 <<'PY' || true
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/", timeout=15)
except urllib.error.HTTPError:
    pass
except Exception as e:
    print(getattr(e, "reason", e))
PY
if [ -s /out/unreachable ]; then
  echo 1 >/out/status
  exit 0
fi
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
