"""A backend sends a whole Content-Length response (8 MiB), then closes with a RST (SO_LINGER 0,
or a close with unread bytes: an early answer to an upload, a pipelined request it dropped).
The whole response is in the proxy's receive queue, but the client reads slower than the
backend wrote: the proxy is not reading the backend (back-pressure), epoll reports the RST
(EPOLLHUP|EPOLLERR, whatever the interest), and the proxy cuts the client's response.
nginx and HAProxy read what the socket holds before they look at its error; so does Linux:
recv() returns the queued bytes first, ECONNRESET after them."""
import fcntl
import socket
import struct
import termios
import time

from h import RawBackend, proxy, recv_all

SIZE = 8 << 20


def send_then_reset(conn):
    head = conn.read_head()
    if head is None:
        return
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE + b"r" * SIZE)
    # Wait until every byte is acknowledged (in the proxy's receive queue): the RST then
    # throws nothing of the response away.
    deadline = time.monotonic() + 5
    while _unsent(conn.sock) and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.backend.results["unsent at reset"] = _unsent(conn.sock)
    conn.reset()


def _unsent(sock):
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


for splice in ("1", "0"):
    backend = RawBackend(send_then_reset)
    p = proxy([{"path": "/", "to": backend.url + "/"}], environ={"MPM_SPLICE": splice})
    res = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(1.5)           # a slow reader: reads only after the backend's reset
        data, how = recv_all(s, 3)
        s.close()
        body = data.partition(b"\r\n\r\n")[2]
        res.append(f"{len(body)}/{SIZE} {how}")
    print(f"splice={splice}:", "; ".join(res))
    print("  unsent at the last reset:", backend.results.get("unsent at reset"))
    print("  error log:", [x for x in p.error_text().splitlines() if "backend" in x][-1:])
    p.stop()
    backend.close()
