"""README's own example: `/login` gets a per-client request rate; everything else goes to the same
app.  A client that writes /login as /%6cogin or //login misses the /login route (prefixes bind raw
bytes) and lands on `/`, without the limit; the app (like most) reads both as /login."""
from h import Backend, recv_head, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        head, buf = recv_head(s, rec, buf)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/login", "to": f"http://127.0.0.1:{be.port}/login",
                  "per_client": {"requests": {"rate": "10/m", "burst": 3}}},
                 {"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                limits={"per_client": {"requests": {"rate": 1000, "burst": 1000}}})
for target in (b"/login", b"/%6cogin", b"/%6C%6F%67%69%6E", b"//login", b"/./login"):
    statuses = []
    for _ in range(6):
        out = client_exchange(p.port, b"POST " + target + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n", 1.0)
        statuses.append(int(out[9:12]) if out[:5] == b"HTTP/" else out[:20])
    print(target.decode(), statuses)
be.close()
