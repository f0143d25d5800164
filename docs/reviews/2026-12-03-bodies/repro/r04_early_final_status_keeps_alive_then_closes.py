"""A backend answers a final status before the request body (a 401 to `Expect: 100-continue`,
the body never sent; or a 413) and keeps its connection: the proxy relays the answer without
`Connection: close`, as if the client connection stayed, then closes it.  A client that sends
its next request on it (curl does, after a 401 to an Expect) meets the close."""
import socket
import time

from h import RawBackend, proxy, recv_all


def answer_401(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        if head.method == "POST":
            conn.send(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
        else:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


backend = RawBackend(answer_401)
p = proxy([{"path": "/", "to": backend.url + "/"}])
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"POST /form HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
    head = s.recv(4096)
    print("first answer:", head.split(b"\r\n\r\n")[0].replace(b"\r\n", b" | ").decode())
    time.sleep(0.05)
    try:
        s.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        data, how = recv_all(s, 2)
    except OSError as e:
        data, how = b"", f"send error {e}"
    print("  next request on the same connection ->", data[:15], how)
    s.close()
p.stop()
backend.close()
