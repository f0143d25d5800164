"""mpm removes a client's own X-Forwarded-For/-Proto/-Host from the request head and writes
its own, but the same fields in a chunked request's *trailer section* reach the backend
untouched (framing.py refuses only framing/routing fields there).  A backend or framework
that merges trailers into the header map sees the client's values."""
from h import Backend, recv_head, recv_for, start_proxy, client_exchange

def script(s, rec):
    head, rest = recv_head(s, rec)
    rec += recv_for(s, rec, 0.5)[:0]
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}])
out = client_exchange(p.port, b"POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n"
                      b"2\r\nhi\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
                      b"X-Forwarded-Host: admin.internal\r\n\r\n", 1.5)
print("client got:", repr(out[:40]))
print("backend received:\n" + bytes(be.conns[0]).decode("latin-1"))
