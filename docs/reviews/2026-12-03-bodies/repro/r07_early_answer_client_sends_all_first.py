"""A backend answers an upload early with a response larger than the socket buffers (16 MiB)
and stops reading, keeping its connection.  The client is the common kind that sends the
whole body before it reads (http.client, requests).  The proxy stops reading the client
(the backend takes nothing), the client never reads: both wait until the route's timeout
(3 s here), then the proxy closes, and the client never sees the answer.  HAProxy drains the
rest of the upload once the response is complete (haproxy/haproxy#3316)."""
import socket
import time

from h import RawBackend, proxy, recv_all

ANSWER = 16 << 20


def early_big_answer(conn):
    head = conn.read_head()
    if head is None:
        return
    conn.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: %d\r\n\r\n" % ANSWER + b"e" * ANSWER)
    time.sleep(10)               # keeps the connection, reads nothing more


backend = RawBackend(early_big_answer)
p = proxy([{"path": "/", "to": backend.url + "/", "timeout": 3}], limits={"request_body": 0})
s = socket.create_connection(("127.0.0.1", p.port), timeout=15)
t0 = time.monotonic()
s.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (100 << 20))
try:
    s.sendall(b"x" * (100 << 20))
    how = "whole body sent"
except OSError as e:
    how = f"send failed after {time.monotonic() - t0:.1f} s: {e.__class__.__name__}"
data, end = recv_all(s, 3)
print(how, "; then read", len(data), "bytes:", data[:30], end)
print([x for x in p.access_lines() if "/up" in x])
p.stop()
backend.close()
