"""WebSockets that live through three reloads (handed over each time), used between them,
then closed: one access-log line each, the tunnel gauges back to 0, bytes counted once."""
import os
import sys
import time

import h

sys.path.insert(0, os.path.join(h.ROOT, "tests"))
from backends import BenchBackend  # noqa: E402
from rawsock import read_head  # noqa: E402
from wsutil import OP_CLOSE, close_frame, frame, read_frame, upgrade_request  # noqa: E402

d = __import__("tempfile").mkdtemp()
bench = BenchBackend(d)
p = h.proxy([{"path": "/ws/", "to": f"ws://127.0.0.1:{bench.port}/ws"}], workers=2)
socks = []
for i in range(10):
    s = p.connect()
    s.sendall(upgrade_request(f"/ws/?n={i}"))
    head, buf = read_head(s, bytearray())
    socks.append((s, buf))
for r in range(3):
    for s, buf in socks:
        s.sendall(frame(b"x" * 1000))
        read_frame(s, buf)
    print("reload", p.reload().stdout.strip(), "tunnels", [w["tunnels"] for w in p.wait_ready(generation=r + 2)["workers"]])
    time.sleep(0.5)
for s, buf in socks:
    s.sendall(frame(b"y" * 1000))
    read_frame(s, buf)
    s.sendall(close_frame(1000))
    while read_frame(s, buf)[0] != OP_CLOSE:
        pass
    s.close()
time.sleep(1.5)
lines = [x for x in p.access_lines() if "/ws/?n=" in x]
st = p.status()
print("lines", len(lines), "of 10; tunnels now", [w["tunnels"] for w in st["workers"]],
      "connections", [w["connections"] for w in st["workers"]])
print(lines[0])
bench.close()
