"""A request from an HTTP/1.0 client goes to the backend as HTTP/1.0 with no Connection:
keep-alive (rewrite.request_head drops Connection), i.e. asking the backend to close after its
response (RFC 9112 §9.3).  mpm still pools the connection when the backend's response is
HTTP/1.1 without "Connection: close" (response._relay: only resp.keep_alive is looked at).
The backend then closes it as asked, and a request that picks it up meanwhile fails: a POST
from another client gets 502 (not retried: non-idempotent).  Python's http.server, for
example, answers "HTTP/1.1" to an HTTP/1.0 request and closes without a Connection header."""
import socket, time, threading
from h import Backend, recv_head, recv_for, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except Exception:
            return
        if head.split(b"\r\n")[0].endswith(b"HTTP/1.0"):
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n1.0")
            time.sleep(0.3)            # (finishing up) then close, as a 1.0 request without keep-alive asks
            return
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1]) \
            if b"content-length:" in head.lower() else 0
        while len(buf) < n:
            d = s.recv(65536); rec += d; buf += d
        del buf[:n]
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}], workers=1)
for i in range(2):
    a = client_exchange(p.port, b"GET /old HTTP/1.0\r\n\r\n", 0.05)
    b = client_exchange(p.port, b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nx=1", 1.0)
    print(f"try {i}: HTTP/1.0 GET -> {a[:15]!r}; POST right after -> {b[:24]!r}")
    time.sleep(0.5)
print("backend connections:", len(be.conns))
print([l for l in open(p.error_log).read().splitlines() if "(502)" in l][-1:])
