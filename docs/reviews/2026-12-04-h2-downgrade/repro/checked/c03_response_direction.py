"""Checked: the response direction.  Hop-by-hop fields and those Connection names, 1xx with
hop-by-hop fields, 101 to a request that asked for no upgrade (502), HTTP/1.0 backend, trailers,
a Content-Length body cut short (RST_STREAM INTERNAL_ERROR), Upgrade on a 200.
(/gzchunked and /gzonly are finding 2, r02.)"""
import os, sys, gzip, random, struct; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *  # noqa: F403
arm(120)
Z = gzip.compress(b"hello world")
R = {
 b"/gzchunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n" % len(Z) + Z + b"\r\n0\r\n\r\n",
 b"/gzonly": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n" + Z,
 b"/101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nGARBAGE",
 b"/1xxhop": b"HTTP/1.1 103 Early Hints\r\nConnection: x-a\r\nX-A: 1\r\nKeep-Alive: 5\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
 b"/100": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
 b"/600": b"HTTP/1.1 600 Weird\r\nContent-Length: 2\r\n\r\nok",
 b"/hop": b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\nUpgrade: foo\r\nTE: trailers\r\nTrailer: x-t\r\nContent-Length: 2\r\n\r\nok",
 b"/connCL": b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok",
 b"/http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
 b"/trail": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\nServer-Timing: a\r\n\r\n",
 b"/clshort": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
 b"/200upgrade": b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nok",
}
def handler(conn, head, body):
    path = head.split(b" ")[1]
    ans = R.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    if path in (b"/gzonly", b"/clshort"):
        conn.sock.sendall(ans); time.sleep(0.2); conn.sock.close(); return None
    return ans
be = Backend(handler)
p = start_proxy([{"path": "/", "to": be.url + "/"}])
c = Client(p.port)
for path in R:
    m = b"HEAD" if path == b"/connCL-HEAD" else b"GET"
    sid = c.get(path)
    st = c.response(sid, 3)
    print("==", path, st.summary()[:300], "interim", st.interim)
    if c.closed:
        print("  connection closed"); c = Client(p.port)
sid = c.request([(b":method", b"HEAD"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/connCL")])
print("== HEAD /connCL", c.response(sid, 3).summary())
print(open(p.error_log).read()[-1500:])
