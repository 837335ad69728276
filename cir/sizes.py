# Measures every wheel of pip's report for the layer budget (docs/cir.md,
# "Layer budget"): the report has no sizes, nor has a PEP 503 simple page,
# and with PEP 658 metadata pip never downloads a wheel at all. Run by
# resolve.sh after pip resolved, while the report's URLs on the index's
# origin still point at the auth proxy (when the index needs credentials),
# so the header goes to the index alone, as for buildkitd's fetches:
#   python3 -S sizes.py REPORT PROXY ORIGIN >SIZES 2>ERRORS
# PROXY is "" without one. One line per wheel on stdout: its sha256, a
# space, its size in bytes. HEAD's Content-Length first; a server that
# refuses HEAD or answers it without a length is asked for the first byte
# (Range: bytes=0-0; Content-Range gives the total), and one that ignores
# Range too is read to the end and counted. Redirects are followed (10 at
# most). On stderr, the wheels none of that worked for, named with their
# URL on the index (PROXY mapped back to ORIGIN, no credentials); the exit
# status is then 1.
import concurrent.futures
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

report, proxy, origin = sys.argv[1], sys.argv[2], sys.argv[3]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def request(url, method, headers):
    # A redirect is followed by hand: urllib would turn a HEAD into a GET.
    for _ in range(10):
        # Named, so an index's logs tell these requests from the fetches.
        req = urllib.request.Request(url, method=method, headers=dict(headers, **{"Accept-Encoding": "identity", "User-Agent": "2dfs-cir-sizes"}))
        try:
            resp = opener.open(req, timeout=30)
        except urllib.error.HTTPError as e:
            if e.code in (301, 302, 303, 307, 308) and e.headers.get("Location"):
                url = urllib.parse.urljoin(url, e.headers["Location"])
                continue
            raise
        if resp.headers.get("Content-Encoding", "identity") != "identity":
            resp.close()
            raise ValueError("the server encodes the file (%s)" % resp.headers["Content-Encoding"])
        return resp
    raise ValueError("more than 10 redirects")


def size(url):
    try:
        with request(url, "HEAD", {}) as r:
            if r.headers.get("Content-Length", "").isdigit():
                return int(r.headers["Content-Length"])
    except (urllib.error.HTTPError, ValueError):
        pass  # some servers refuse HEAD: ask otherwise
    with request(url, "GET", {"Range": "bytes=0-0"}) as r:
        total = r.headers.get("Content-Range", "").rpartition("/")[2]
        if r.status == 206 and total.isdigit():
            return int(total)
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                return n
            n += len(chunk)


def shown(url):
    if proxy and url.startswith(proxy):
        url = origin + url[len(proxy):]
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.hostname + (":%d" % u.port if u.port else ""), u.path, "", ""))


with open(report) as f:
    items = json.load(f).get("install", [])


def measure(it):
    info = it["download_info"]
    sha = info.get("archive_info", {}).get("hashes", {}).get("sha256") or info.get("archive_info", {}).get("hash", "").partition("=")[2]
    try:
        return sha, size(info["url"]), None
    except Exception as e:
        return sha, None, "%s %s from %s: %s" % (it["metadata"]["name"], it["metadata"]["version"], shown(info["url"]), getattr(e, "reason", e))


failed = False
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    for sha, n, err in pool.map(measure, items):
        if err:
            print(err, file=sys.stderr)
            failed = True
        else:
            print(sha, n)
sys.exit(1 if failed else 0)
