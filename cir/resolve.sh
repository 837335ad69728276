# Resolves pip requirements ("$@") to wheels for a target platform, run by
# the lazy-builder in a helper container of the build host's architecture:
# pip resolves for the tags it is given and runs nothing of the target.
# Settings come in the environment: PYVER, ABI, MACHINE, TAGS, INDEX,
# ORIGIN (INDEX's scheme://host[:port]) and AUTH_ID (the pipAuthSecret, or
# empty; its value is mounted at /run/2dfs/pipauth when given). The base
# for the target is mounted at /base: pip sees the distributions installed
# in its site folders as installed (their metadata only), so a requirement
# the base satisfies is not added again. It always exits 0 and leaves in
# /out: status (0 or 1), log, report.json (pip's installation report),
# unreachable (why the index cannot be reached), denied (the index's 401 or
# 403), nosecret (the id of the secret needed but not given), badsecret
# (the secret holds a line break) and, on failure,
# missing (missing.py: every requirement without a wheel, with its path),
# sizes (sizes.py: each wheel's sha256 and size) and nosize (the wheels
# whose size could not be read).
set -u
mkdir -p /out
echo "2dfs: python $PYVER" >/out/log
set -f
auth=
if [ -n "${AUTH_ID:-}" ]; then
  if [ ! -s /run/2dfs/pipauth ]; then
    echo "$AUTH_ID" >/out/nosecret
    echo 1 >/out/status
    exit 0
  fi
  auth=/run/2dfs/pipauth
fi
# pip says only "no matching distribution" when the index cannot be reached
# or refuses us, so the index is probed first (another HTTP error status
# counts as reached: some indexes serve no root page).
python3 - "$INDEX" "$auth" >/tmp/probe 2>&1 <<'PY' || true
import sys, urllib.error, urllib.request
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
req = urllib.request.Request(sys.argv[1].rstrip("/") + "/")
if sys.argv[2]:
    auth = open(sys.argv[2], "rb").read().decode()
    # buildkitd's wheel fetches send the value as is, and a header
    # cannot hold a line break (a file written with echo ends with one).
    if "\n" in auth or "\r" in auth:
        print("badsecret")
        sys.exit()
    req.add_unredirected_header("Authorization", auth)
try:
    urllib.request.build_opener(NoRedirect).open(req, timeout=15)
except urllib.error.HTTPError as e:
    if e.code in (401, 403):
        print("denied %d %s" % (e.code, e.reason))
except Exception as e:
    print("unreachable %s" % getattr(e, "reason", e))
PY
case $(cat /tmp/probe) in
  badsecret) echo "$AUTH_ID" >/out/badsecret ;;
  denied*) sed 's/^denied //' /tmp/probe >/out/denied ;;
  unreachable*) sed 's/^unreachable //' /tmp/probe >/out/unreachable ;;
  ?*) cat /tmp/probe >/out/unreachable ;;
esac
if [ -s /out/badsecret ] || [ -s /out/denied ] || [ -s /out/unreachable ]; then
  echo 1 >/out/status
  exit 0
fi
index=$INDEX
proxy=
if [ -n "$auth" ]; then
  python3 /2dfs/authproxy.py "$ORIGIN" "$auth" /tmp/proxy.port 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do [ -s /tmp/proxy.port ] && break; sleep 0.1; done
  proxy=http://127.0.0.1:$(cat /tmp/proxy.port)
  index=$proxy${INDEX#"$ORIGIN"}
fi
# The base's installed distributions, as its python3 finds them (Debian's
# sys.path order): the metadata folders only, so no code of the base is
# importable. pip runs without site (-S), from its own package folder, so
# the helper's own distributions are not seen.
path=/tmp/pip
mkdir -p /tmp/pip
ln -s "$(python3 -c 'import os, pip; print(os.path.dirname(pip.__file__))')" /tmp/pip/pip
n=0
for d in /usr/local/lib/python$PYVER/dist-packages /usr/lib/python3/dist-packages /usr/lib/python$PYVER/dist-packages; do
  n=$((n + 1))
  mkdir -p /tmp/installed/$n
  path=$path:/tmp/installed/$n
  set +f
  for m in /base$d/*.dist-info /base$d/*.egg-info; do
    [ -e "$m" ] && cp -RP "$m" /tmp/installed/$n/
  done
  set -f
done
export PYTHONPATH=$path
opts="--dry-run --break-system-packages --prefix /tmp/prefix --only-binary=:all:"
for t in $TAGS; do opts="$opts --platform $t"; done
opts="$opts --python-version $PYVER --implementation cp --abi $ABI --abi abi3 --abi none"
opts="$opts --index-url $index --retries 0 --timeout 15 --no-cache-dir --disable-pip-version-check --no-input"
export PIPOPTS=$opts
if python3 -S /2dfs/pipdrv.py install $opts --report /out/report.json "$@" >>/out/log 2>&1; then
  echo 0 >/out/status
  # The layer budget groups by size, which the report lacks: sizes.py asks
  # the index (through the proxy, which is still up).
  python3 -S /2dfs/sizes.py /out/report.json "$proxy" "$ORIGIN" >/out/sizes 2>/out/nosize || true
else
  echo 1 >/out/status
  python3 -S /2dfs/missing.py "$@" >/out/missing 2>>/out/log
fi
if [ -n "$proxy" ]; then
  kill "$pid"
  # The report and the log name the index, not the proxy.
  python3 - "$proxy" "$ORIGIN" <<'PY'
import json, os, sys
proxy, origin = sys.argv[1:3]
with open("/out/log") as f:
    log = f.read()
with open("/out/log", "w") as f:
    f.write(log.replace(proxy, origin))
if os.path.exists("/out/report.json"):
    with open("/out/report.json") as f:
        r = json.load(f)
    for it in r.get("install", []):
        u = it["download_info"]["url"]
        if u.startswith(proxy):
            it["download_info"]["url"] = origin + u[len(proxy):]
    with open("/out/report.json", "w") as f:
        json.dump(r, f)
PY
fi
exit 0
