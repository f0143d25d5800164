"""The access log's %b (body bytes) counts the 1xx interim heads relayed before the final
response as body: a 204 after a 100 Continue is logged with 25 body bytes (Apache's %b counts
the body alone; nginx's $body_bytes_sent likewise)."""
import socket

from h import RawBackend, access, proxy, recv_all


def continue_then(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.read_body(head)
        if head.target.endswith("204"):
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")


backend = RawBackend(continue_then)
p = proxy([{"path": "/", "to": backend.url + "/"}])
for target in ("/c204", "/c200"):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
              % target.encode())
    s.recv(100)
    s.sendall(b"abc")
    data, how = recv_all(s, 3)
    s.close()
    line = access(p, target)
    print(target, "client got", len(data), "bytes after the 100;", "access:", line[0].split('"')[2].strip() if line else None)
p.stop()
backend.close()
