"""The balancer member table has the same kind of counter cells (4 per ServerLimit slot, at
least 8): with `server_limit: 2`, five generations lingering on held requests leave the
fifth without a cell, and the member's `busy` no longer counts its requests (bybusyness and
max_connections read it): 6 requests held in the newest generation, `busy` says 0."""
import socket
import threading
import time

import h

slow = socket.socket()
slow.bind(("127.0.0.1", 0))
slow.listen(64)
held = []
threading.Thread(target=lambda: [held.append(slow.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
p = h.proxy([{"path": "/", "to": "balancer://pool/"}],
            balancers={"pool": {"method": "bybusyness", "members": [{"url": f"http://127.0.0.1:{slow.getsockname()[1]}"}]}},
            mpm={"workers": 2, "server_limit": 2, "graceful_timeout": 10},
            timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5})
socks = []
for i in range(4):
    for _ in range(4):
        s = p.connect()
        s.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    time.sleep(0.3)
    p.reload()
p.wait_ready()
time.sleep(0.5)
print("error log:", [line[22:] for line in p.error_text().splitlines() if "counter cell" in line])
import json  # noqa: E402
before = json.loads(p.mpmctl("balancer", "--json").stdout)["balancers"][0]["members"][0]["busy"]
for _ in range(6):
    s = p.connect()
    s.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
time.sleep(0.5)
after = json.loads(p.mpmctl("balancer", "--json").stdout)["balancers"][0]["members"][0]["busy"]
print(f"member busy before {before}, after 6 more held requests in the newest generation: {after}")
