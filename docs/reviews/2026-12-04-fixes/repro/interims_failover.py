"""Interims counted across a failover: member A sends 6 103s and closes, member B 6 103s and a
200: the client (HTTP/2 or HTTP/1.0: no interim counted in ex.sent) gets 502 "more than 10".
cd /tmp/rev-fixes/tests && /work/main/.venv/bin/python THIS"""
import sys, os, tempfile, time, socket
sys.path.insert(0, os.getcwd())
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend

HINT = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
def bad(conn):
    if conn.read_head() is not None:
        conn.send(HINT * 6); time.sleep(0.05)
def good(conn):
    while conn.read_head() is not None:
        conn.send(HINT * 6 + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

a, b = RawBackend(bad), RawBackend(good)
d = tempfile.mkdtemp(prefix="rev-fixes-")
proxy = Proxy(d, [{"path": "/", "to": "balancer://c/"}], workers=1,
              balancers={"c": {"method": "byrequests", "members": [{"url": a.url}, {"url": b.url}]}})
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
try:
    proxy.start()
    for i in range(2):
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        s.sendall(b"GET /x HTTP/1.0\r\n\r\n")
        data = bytearray()
        while (c := s.recv(65536)): data += c
        print("HTTP/1.0:", bytes(data.split(b"\r\n")[0]), "A saw", len(a.requests), "B saw", len(b.requests))
    c = H2Client(proxy.port)
    for i in range(2):
        sid = c.request("GET", "/x")
        c.wait(lambda: c.streams[sid].finished, 5, "final")
        print("h2:", c.streams[sid].status, "interims", len(c.streams[sid].interim), "A saw", len(a.requests), "B saw", len(b.requests))
    time.sleep(0.3)
    print("\n".join(l for l in proxy.error_text().splitlines() if "interim" in l or "failing" in l))
finally:
    proxy.stop(); a.close(); b.close()
