"""Probe: `reverse: true` on Location / Content-Location / URI as the backend sends them.
The backend answers each request with the Location lines its path names."""
import sys
from h import Backend, recv_head, start_proxy, client_exchange

PORT = {}

def script(s, rec):
    buf = bytearray()
    while True:
        head, buf = recv_head(s, rec, buf)
        path = head.split(b" ")[1]
        me = b"http://127.0.0.1:%d" % PORT["be"]
        lines = {
            b"/files/abs": [b"Location: " + me + b"/files/x?y=1"],
            b"/files/other": [b"Location: http://elsewhere.example/files/x"],
            b"/files/rel": [b"Location: /files/x"],
            b"/files/outside": [b"Location: " + me + b"/private/x"],
            b"/files/userinfo": [b"Location: http://user:pw@127.0.0.1:%d/files/x" % PORT["be"]],
            b"/files/multi": [b"Location: " + me + b"/files/1", b"Location: " + me + b"/files/2",
                              b"Content-Location: " + me + b"/files/c", b"URI: " + me + b"/files/u",
                              b"Link: <" + me + b"/files/l>; rel=next"],
            b"/files/cookie": [b"Set-Cookie: s=1; Path=/files/; Domain=127.0.0.1"],
            b"/files/prefixonly": [b"Location: " + me + b"/filesystem"],
            b"/files/tabs": [b"Location:\t" + me + b"/files/t \t"],
        }.get(path.split(b"?")[0], [])
        s.sendall(b"HTTP/1.1 302 Found\r\n" + b"".join(l + b"\r\n" for l in lines) + b"Content-Length: 0\r\n\r\n")

be = Backend(script)
PORT["be"] = be.port
p = start_proxy([{"path": "/static/", "to": f"http://127.0.0.1:{be.port}/files/", "reverse": True}])
names = ["abs", "other", "rel", "outside", "userinfo", "multi", "cookie", "prefixonly", "tabs"]
for n in names:
    out = client_exchange(p.port, b"GET /static/%s HTTP/1.1\r\nHost: front.example\r\n\r\n" % n.encode(), 0.5)
    print("==", n, "\n" + out.decode("latin-1"))
for req in [b"GET /static/abs HTTP/1.0\r\n\r\n",
            b"GET /static/abs HTTP/1.1\r\nHost: front.example:8443\r\n\r\n",
            b"GET http://other.example/static/abs HTTP/1.1\r\nHost: front.example\r\n\r\n"]:
    print("==", req[:60], "\n" + client_exchange(p.port, req, 0.5).decode("latin-1"))
be.close()
