"""Probe: what the backend receives for hostile request heads (spoofed forwarding fields,
Connection naming fields the proxy adds, odd Hosts, odd targets).  The backend echoes the
head it got as the body."""
import sys
from h import Backend, recv_head, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        head, buf = recv_head(s, rec, buf)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(head) + head)

be = Backend(script)
routes = [
    {"path": "/static/", "to": f"http://127.0.0.1:{be.port}/files/"},
    {"match": "^/re/(.*)$", "to": f"http://127.0.0.1:{be.port}/x/$1"},
    {"match": "^/q/(.*)$", "to": f"http://127.0.0.1:{be.port}/q/$1"},
    {"path": "/ph/", "to": f"http://127.0.0.1:{be.port}/ph/", "preserve_host": True},
    {"path": "/admin/", "to": f"http://127.0.0.1:{be.port}/ADMIN/", "when": {"header": {"Host": "^admin\\.example$"}}},
    {"path": "/", "to": f"http://127.0.0.1:{be.port}/"},
]
p = start_proxy(routes)
cases = [
    b"GET /a HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6;proto=https;host=evil\r\nX-Real-IP: 6.6.6.6\r\nVia: 1.1 evil\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For, Host, Content-Length, X-Forwarded-Proto\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close, Cookie, Authorization\r\nCookie: c=1\r\nAuthorization: x\r\n\r\n",
    b"GET /ph/x HTTP/1.1\r\nHost: A.Example.:8080\r\n\r\n",
    b"GET /admin/x HTTP/1.1\r\nHost: ADMIN.example\r\n\r\n",
    b"GET /admin/x HTTP/1.1\r\nHost: admin.example.\r\n\r\n",
    b"GET /admin/x HTTP/1.1\r\nHost: admin.example:80\r\n\r\n",
    b"GET /static/%2e%2e/admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static//admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static/a/../../admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static/..%2Fadmin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static/%2E%2E%2Fadmin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static/.%2e/admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static/%252e%252e/admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /static;x=1/../admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /re/a%3Fb HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /re/a%23b?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /re/a?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /q/p?user=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /q/p HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://admin.example/admin/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: x\r\n y\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: ,,, x-forwarded-for ,\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: TE\r\nTE: trailers\r\n\r\n",
]
for req in (cases if len(sys.argv) < 2 else [cases[int(a)] for a in sys.argv[1:]]):
    out = client_exchange(p.port, req, 1.0)
    print("=" * 60)
    print(">>>", req.decode("latin-1").split("\r\n\r\n")[0].replace("\r\n", " | "))
    print(out.decode("latin-1"))
be.close()
