"""Requests still under way when an old generation's graceful_timeout runs out: each must
leave its access-log line (HTTP/1.1, an HTTP/2 stream, a TLS-less WebSocket kept busy)."""
import socket
import threading
import time

import h
from h2client import H2Client

port = h.backend()
slow = socket.socket()
slow.bind(("127.0.0.1", 0))
slow.listen(16)
held = []


def hold():
    while True:
        c, _ = slow.accept()
        held.append(c)          # reads nothing, answers nothing


threading.Thread(target=hold, daemon=True).start()
p = h.proxy([{"path": "/slow/", "to": f"http://127.0.0.1:{slow.getsockname()[1]}/"},
             {"path": "/app/", "to": f"http://127.0.0.1:{port}/"}],
            mpm={"workers": 1, "server_limit": 16, "graceful_timeout": 1},
            timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5})
s1 = p.connect()
s1.sendall(b"GET /slow/h1 HTTP/1.1\r\nHost: x\r\n\r\n")
c = H2Client(p.port)
c.request("GET", "/slow/h2", scheme="http")
time.sleep(0.3)
print("reload:", p.reload().stdout.strip())
time.sleep(3)
print("HTTP/1.1 line:", [x for x in p.access_lines() if "/slow/h1" in x])
print("HTTP/2 line:  ", [x for x in p.access_lines() if "/slow/h2" in x])
print("status:", [(w["generation"], w["state"], w["connections"]) for w in p.status()["workers"]])
