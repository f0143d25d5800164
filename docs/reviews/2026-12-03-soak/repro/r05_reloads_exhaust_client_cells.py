"""Reloads while old generations linger (each has a request under way, to a backend that
never answers, until graceful_timeout): the client table has 8 counter cells for 2 workers,
the 5th generation's workers find none, and per-client limits are off in them: one client
then opens 20 connections past `per_client.connections: 4`."""
import socket
import threading
import time

import h

slow = socket.socket()
slow.bind(("127.0.0.1", 0))
slow.listen(64)
held = []
threading.Thread(target=lambda: [held.append(slow.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
port = h.backend()
p = h.proxy([{"path": "/held", "to": f"http://127.0.0.1:{slow.getsockname()[1]}/"},
             {"path": "/", "to": f"http://127.0.0.1:{port}/"}],
            mpm={"workers": 2, "server_limit": 16, "graceful_timeout": 10},
            timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5},
            limits={"per_client": {"connections": 4}})
clients = []
for i in range(4):
    for _ in range(4):      # a held request on each worker of this generation (other clients)
        s = socket.create_connection(("127.0.0.1", p.port), source_address=(f"127.0.0.{10 + len(clients)}", 0))
        s.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        clients.append(s)
    time.sleep(0.3)
    print("reload", p.reload().stdout.strip(), flush=True)
p.wait_ready()
time.sleep(0.5)
print("error log:", [line[22:] for line in p.error_text().splitlines() if "counter cell" in line])
opened, answered = [], 0
for i in range(20):
    try:
        s = socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.5", 0), timeout=3)
        opened.append(s)
        s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
        answered += s.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        pass            # refused at accept (reset): over the limit
print(f"one client, per_client.connections 4: {answered} of 20 concurrent connections served")
