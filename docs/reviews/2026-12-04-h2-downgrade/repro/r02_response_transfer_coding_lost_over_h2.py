"""Finding 2: a backend response with a transfer coding other than (or besides) chunked --
`Transfer-Encoding: gzip, chunked`, or `Transfer-Encoding: gzip` to the close -- reaches an
HTTP/2 client with the coding silently removed: the DATA frames carry gzip bytes and no
field says so (no transfer-encoding, which HTTP/2 forbids, and no content-encoding).  An
HTTP/1.1 client of the same proxy gets the Transfer-Encoding line and can decode."""

import gzip
import socket

from h import Backend, Client, arm, show, start_proxy, time

arm(60)
Z = gzip.compress(b"hello world")
ANSWERS = {
    b"/gz-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n" % len(Z) + Z + b"\r\n0\r\n\r\n",
    b"/gz-close": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n" + Z,
}


def handler(conn, head, body):
    path = head.split(b" ")[1]
    conn.sock.sendall(ANSWERS[path])
    if path == b"/gz-close":
        time.sleep(0.1)
        conn.sock.close()
        return None
    return b""


backend = Backend(handler)
proxy = start_proxy([{"path": "/", "to": backend.url + "/"}])
client = Client(proxy.port)
for path in ANSWERS:
    st = client.response(client.get(path))
    show(f"HTTP/2 {path.decode()} fields", st.headers)
    show(f"HTTP/2 {path.decode()} body", bytes(st.body))
    try:
        gzip.decompress(bytes(st.body))
        show("   ...which is", "gzip data, with nothing in the fields saying so")
    except OSError:
        show("   ...which is", "not gzip")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    show(f"HTTP/1.1 {path.decode()} head", data.split(b"\r\n\r\n")[0])
