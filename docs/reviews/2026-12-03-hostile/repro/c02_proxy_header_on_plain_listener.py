"""c02 (found sound): a PROXY header (v1, v2) sent to a listener without `proxy_protocol`, and a
request with none sent to one with it, is never served as a request."""
from h import Backend, connect, start_proxy

from worker.proxyproto import header

backend = Backend()
p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"client_header": 1})
for name, preface in (("v1", header(1, b"192.0.2.1", 1, b"127.0.0.1", 80)),
                      ("v2", header(2, b"192.0.2.1", 1, b"127.0.0.1", 80)),
                      ("v2 LOCAL", b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")):
    s = connect(p.port)
    s.sendall(preface + b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError as exc:
        data += repr(exc).encode()
    first = data.split(b"\r\n", 1)[0]
    print(f"{name:9} on a plain listener -> {first!r}, backend requests: {len(backend.heads)}")
    s.close()
