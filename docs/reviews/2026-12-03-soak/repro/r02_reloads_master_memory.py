"""Many reloads with no traffic: the master's RSS and fds, and its children, after each
batch.  A master lives for months; each reload must leave nothing behind in it."""
import sys
import time

import h
import psutil

N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
p = h.proxy([{"path": "/", "to": "http://127.0.0.1:9/"}], workers=2)
master = psutil.Process(p.proc.pid)


def show(i):
    fds = master.num_fds()
    print(f"after {i:3d} reloads: master rss {master.memory_info().rss // 1024} KiB, fds {fds}, "
          f"children {len(master.children())}", flush=True)


show(0)
for i in range(1, N + 1):
    r = p.reload()
    assert r.returncode == 0, r.stderr
    p.wait_ready(generation=i + 1)
    if i % 10 == 0:
        time.sleep(0.5)
        show(i)
