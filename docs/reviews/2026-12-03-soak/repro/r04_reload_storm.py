"""A careless operator: a reload every 0.3 s while each generation has a request under way
(a backend that never answers), so old generations linger until graceful_timeout.  Watch
the processes, the scoreboard rows and the counts, and that everything ends."""
import socket
import threading
import time

import h
import psutil

slow = socket.socket()
slow.bind(("127.0.0.1", 0))
slow.listen(64)
held = []
threading.Thread(target=lambda: [held.append(slow.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
p = h.proxy([{"path": "/", "to": f"http://127.0.0.1:{slow.getsockname()[1]}/"}],
            mpm={"workers": 2, "server_limit": 8, "graceful_timeout": 4},
            timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5})
master = psutil.Process(p.proc.pid)
clients = []
for i in range(12):
    for _ in range(2):
        s = p.connect()
        s.sendall(b"GET /held%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        clients.append(s)
    time.sleep(0.2)
    r = p.reload()
    st = p.status()
    print(f"reload {i}: rc {r.returncode} {r.stdout.strip() or r.stderr.strip()[:100]} | children "
          f"{len(master.children())} rows {len(st['workers'])} conns {sum(w['connections'] for w in st['workers'])}",
          flush=True)
time.sleep(6)
st = p.status()
print("after graceful_timeout: children", len(master.children()), "rows", len(st["workers"]),
      [(w["generation"], w["state"], w["connections"]) for w in st["workers"]])
print("access lines", len(p.access_lines()), "of", len(clients), "held requests")
