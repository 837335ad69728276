# Forwards pip's requests to an index that needs an Authorization header,
# adding it: pip has no option to send a header, and a Basic header turned
# into URL or netrc credentials would not cover Bearer tokens. Run by
# resolve.sh in the helper container, on loopback only:
#   python3 authproxy.py ORIGIN SECRETFILE PORTFILE
# ORIGIN is the index's scheme://host[:port]; the header goes to it alone,
# never to another host (links elsewhere are left for pip to fetch
# directly). Redirects are handed back to pip, their Location moved onto the
# proxy when it points at ORIGIN, so the header never follows one off the
# index. Links to ORIGIN in index pages (HTML or JSON) are moved onto the
# proxy too, so pip fetches the files through it; resolve.sh maps the
# report's URLs back to ORIGIN. Nothing is logged: no header reaches a log.
import http.server
import os
import shutil
import sys
import urllib.error
import urllib.request

origin, secret_file, port_file = sys.argv[1:4]
with open(secret_file, "rb") as f:
    auth = f.read().decode()  # resolve.sh refused line breaks

HOP = {"host", "connection", "proxy-connection", "keep-alive", "authorization", "proxy-authorization",
       "accept-encoding", "te", "trailer", "trailers", "upgrade", "transfer-encoding", "content-length"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.forward()

    def do_GET(self):
        self.forward()

    def forward(self):
        here = "http://127.0.0.1:%d" % self.server.server_address[1]
        req = urllib.request.Request(origin + self.path, method=self.command)
        for k, v in self.headers.items():
            if k.lower() not in HOP:
                req.add_header(k, v)
        req.add_unredirected_header("Authorization", auth)
        try:
            resp = opener.open(req, timeout=60)
            code = resp.status
        except urllib.error.HTTPError as e:
            resp, code = e, e.code
        except Exception as e:
            self.send_response(502)
            self.end_headers()
            self.wfile.write(("index %s cannot be reached: %s\n" % (origin, getattr(e, "reason", e))).encode())
            return
        ctype = resp.headers.get("Content-Type", "")
        rewrite = ("html" in ctype or "json" in ctype) and not resp.headers.get("Content-Encoding")
        self.send_response(code)
        for k, v in resp.headers.items():
            if k.lower() in HOP:
                continue
            if k.lower() == "location" and v.startswith(origin):
                v = here + v[len(origin):]
            self.send_header(k, v)
        if rewrite:
            body = resp.read()
            for a, b in ((origin, here), (origin.replace("/", "\\/"), here.replace("/", "\\/"))):
                body = body.replace(a.encode(), b.encode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if resp.headers.get("Content-Length"):
            self.send_header("Content-Length", resp.headers["Content-Length"])
        self.end_headers()
        if self.command != "HEAD":
            shutil.copyfileobj(resp, self.wfile)


# HTTP/1.0: one request per connection, a body ends with it.
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
