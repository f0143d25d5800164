"""A response whose head and broken body arrive in one read: the client gets our 502, but the
access log's %b subtracts the backend's head too (head_sent counted in response._relay before
_send found the body broken).  With a balancer, a GET fails over to a healthy member and the
relayed 200's %b is short by the bad member's head."""
import socket
import time

from h import RawBackend, proxy, recv_all

BAD = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Pad: " + b"p" * 40 + b"\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")


def bad(conn):
    while conn.read_head() is not None:
        conn.send(BAD)


def good(conn):
    while conn.read_head() is not None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"g" * 500)


b1, b2 = RawBackend(bad), RawBackend(good)
p = proxy([{"path": "/single/", "to": b1.url + "/"}, {"path": "/lb/", "to": "balancer://c/"}],
          balancers={"c": {"method": "byrequests", "members": [{"url": b1.url}, {"url": b2.url}]}})
for path in (b"/single/x", b"/lb/a", b"/lb/b"):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
    data, _ = recv_all(s, 2)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    print(f"{path.decode():10s} client got {head.split(b' ')[1].decode()} with a {len(body)}-byte body")
time.sleep(0.3)
for line in p.access_lines():
    print("  log:", line.split('"')[1], line.split('"')[2].split()[:2])
p.stop()
b1.close()
b2.close()
