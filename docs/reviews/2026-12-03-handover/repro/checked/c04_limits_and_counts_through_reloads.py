"""Checked: per_client.connections 4; four keep-alive connections busy through 10 reloads;
then a fifth is refused (reset at accept), the four still work, after they close four new
ones are served and a fifth refused; status totals and /metrics connection gauges come
back to the truth; 20 idle keep-alive connections survive 25 reloads (keepalive 60)."""
import os
import signal
import socket
import threading
import time
import urllib.request

import _path  # noqa: F401
from h import bench, free_port, proxy, read_head


def get(s):
    s.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
    head, body = read_head(s)
    while len(body) < 100:
        body += s.recv(1000)
    return int(head.split()[1])


def fifth(p):
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=3) as s:
            return get(s)
    except OSError as exc:
        return type(exc).__name__


admin = free_port()
with bench() as backend, proxy([{"path": "/", "to": f"http://127.0.0.1:{backend.port}/"}], workers=2,
                               limits={"per_client": {"connections": 4}}, timeouts={"keepalive": 60},
                               admin={"listen": f"127.0.0.1:{admin}", "allow": ["127.0.0.0/8"]}) as p:
    socks = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(4)]
    errors, running = [], [True]

    def loop(s):
        while running[0]:
            try:
                get(s)
            except OSError as exc:
                errors.append(repr(exc))
                return
    threads = [threading.Thread(target=loop, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for _ in range(10):
        os.kill(p.proc.pid, signal.SIGHUP)
        time.sleep(0.7)
    p.wait_ready(generation=11)
    time.sleep(1.5)
    print("a 5th while 4 are busy:", fifth(p), "; errors on the 4:", errors)
    running[0] = False
    for t in threads:
        t.join()
    print("the 4 after 10 reloads:", [get(s) for s in socks], "; status totals.connections:",
          p.status()["totals"]["connections"])
    for s in socks:
        s.close()
    time.sleep(0.5)
    new = [socket.create_connection(("127.0.0.1", p.port), timeout=3) for _ in range(4)]
    print("4 new ones:", [get(s) for s in new], "; a 5th:", fifth(p))
    for s in new:
        s.close()
    idle = [socket.create_connection(("127.0.0.1", p.port), timeout=5, source_address=(f"127.0.0.{2 + n // 4}", 0))
            for n in range(20)]
    for s in idle:
        get(s)
    for _ in range(25):
        os.kill(p.proc.pid, signal.SIGHUP)
        time.sleep(0.4)
    p.wait_ready(generation=36)
    time.sleep(2)
    print("20 idle connections after 25 more reloads:", sorted(set(get(s) for s in idle)),
          "; status totals.connections:", p.status()["totals"]["connections"])
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    print("/metrics:", [line for line in text.splitlines() if line.startswith("mpm_worker_connections")])
    for s in idle:
        s.close()
