"""r02: a client's `X_Forwarded_Proto: https` (underscore spelling) goes through mpm untouched
beside mpm's own `X-Forwarded-Proto: http`; a backend that builds a CGI/WSGI environ (here the
stdlib's wsgiref, whose header joining gunicorn < 22 shares) reads both as HTTP_X_FORWARDED_PROTO,
and Django's scheme logic (first value of the list) then believes the plain-http request is https.

Runs the same request through mpm, nginx, HAProxy and Apache, each in front of (a) a raw recorder and
(b) a wsgiref app, and prints what the backend got and what the app concluded.
Usage: /work/main/.venv/bin/python repro/r02_underscore_forwarded.py"""
import os, socket, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers as peers
from wsgiref.simple_server import make_server, WSGIRequestHandler

REQ = (b"GET /whoami HTTP/1.1\r\nHost: a.test\r\n"
       b"X_Forwarded_Proto: https\r\nX_Forwarded_For: 6.6.6.6\r\nX_Forwarded_Host: evil.example\r\n\r\n")


def app(environ, start_response):
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    # django.http.request.HttpRequest.scheme with SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    first = proto.split(",", 1)[0].strip() if proto else None
    scheme = "https" if first == "https" else "http"
    body = f"HTTP_X_FORWARDED_PROTO={proto!r} HTTP_X_FORWARDED_FOR={environ.get('HTTP_X_FORWARDED_FOR')!r} django-scheme={scheme}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *a): pass


def main():
    print("request:", REQ)
    for name, cls in list(peers.PEERS.items()) + [("apache", peers.Apache)]:
        # (a) the raw bytes the backend receives
        def raw(p, be):
            t0 = time.monotonic()
            peers.exchange(p.port, REQ)
            time.sleep(0.2)
            return b"".join(be.since(t0).values())
        mk = cls
        if name == "mpm":
            mk = lambda bp, w: peers.Mpm(bp, w)
        got = peers.run_with(mk, raw)
        print(f"\n== {name}: backend received\n   {got!r}")
        def trailer(p, be):
            out = {}
            for t in (b"X-Forwarded-Proto: https", b"X_Forwarded_Proto: https"):
                t0 = time.monotonic()
                resp, _ = peers.exchange(p.port, b"POST /t HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         b"2\r\nok\r\n0\r\n" + t + b"\r\n\r\n", idle=0.4)
                time.sleep(0.2)
                body = b"".join(be.since(t0).values())
                out[t] = (peers.statuses(resp), body[body.find(b"\r\n\r\n") + 4:] if body else b"")
            return out
        for t, (st, body) in peers.run_with(mk, trailer).items():
            print(f"   trailer {t!r}: client got {st}, backend body+trailers {body!r}")
        # (b) a wsgiref backend
        srv = make_server("127.0.0.1", 0, app, handler_class=Quiet)
        t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
        import tempfile
        work = tempfile.mkdtemp(prefix="r02-")
        peer = (peers.Mpm if name == "mpm" else cls)(srv.server_port, work)
        try:
            out, _ = peers.exchange(peer.port, REQ.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
        finally:
            peer.stop(); srv.shutdown(); srv.server_close()
        said = out.split(b"\r\n\r\n", 1)[-1].decode()
        print(f"   wsgiref app says: {said}")


if __name__ == "__main__":
    main()
