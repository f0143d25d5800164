"""PROXY protocol sender on the wire (v1, v2) for IPv4 and IPv6 clients, on [::1] and
127.0.0.1 listeners; and the X-Forwarded-For an IPv6 client gets."""
import os, sys, socket
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import Backend, recv_head, read_all, start_proxy
from support import free_port

got = []


def script(s, rec):
    data = bytearray()
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        if not d:
            break
        data += d
    got.append(bytes(data))
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


be = Backend(script)
be6 = Backend(script, host="::1", family=socket.AF_INET6)
p6 = free_port()
p = start_proxy([{"path": "/v1/", "to": f"http://127.0.0.1:{be.port}/", "proxy_protocol": "v1"},
                 {"path": "/v2/", "to": f"http://127.0.0.1:{be.port}/", "proxy_protocol": "v2"},
                 {"path": "/b6v2/", "to": f"http://[::1]:{be6.port}/", "proxy_protocol": "v2"},
                 {"path": "/b6v1/", "to": f"http://[::1]:{be6.port}/", "proxy_protocol": "v1"}],
                listen=lambda port: [f"127.0.0.1:{port}", f"[::1]:{p6}"])
for host, port in (("127.0.0.1", p.port), ("::1", p6)):
    for path in ("/v1/", "/v2/", "/b6v1/", "/b6v2/"):
        got.clear()
        s = socket.create_connection((host, port), timeout=5)
        sport = s.getsockname()[1]
        s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
        ans = read_all(s, 1.5, limit=60)
        s.close()
        raw = got[0] if got else b""
        i = raw.find(b"GET ")
        hdr, head = raw[:i], raw[i:]
        xff = [l for l in head.split(b"\r\n") if l.lower().startswith(b"x-forwarded-for")]
        print(f"client {host}:{sport} -> {path:7s} answer {ans[:15]!r}; header {hdr!r}; {xff}")
p.stop()
