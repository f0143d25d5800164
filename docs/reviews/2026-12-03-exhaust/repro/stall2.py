# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/stall2.py
import tempfile
import sys, os, time, socket, subprocess, psutil, threading, selectors
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
# backend: accepts, never answers
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(0); bport = ls.getsockname()[1]
held = []
def acc():
    while True:
        try: c, _ = ls.accept(); held.append(c)
        except OSError: return
pass
d=tempfile.mkdtemp(prefix="exhaust-"); 
p = Proxy(d, [{"path": "/", "to": f"http://127.0.0.1:{bport}/"}], workers=1, timeouts={"connect": 1, "proxy": 2, "client_header": 5, "keepalive": 5})
p.start()
try:
    w = psutil.Process(p.worker_pids()[0]); base = w.num_fds(); rss0 = w.memory_info().rss
    cs = []
    t0 = time.monotonic()
    for i in range(300):
        c = socket.create_connection(("127.0.0.1", p.port)); c.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"); cs.append(c)
    time.sleep(1); print("fds during", w.num_fds(), "held by backend", len(held))
    got = {}
    for c in cs:
        c.settimeout(5); 
        try: r = c.recv(100).split(b" ")[1]
        except Exception as e: r = repr(e)
        got[r] = got.get(r, 0) + 1
    print("answers", got, "in", round(time.monotonic()-t0, 2))
    for c in cs: c.close()
    time.sleep(0.5)
    print("fds base", base, "after", w.num_fds(), "rss growth KiB", (w.memory_info().rss - rss0)//1024)
    print(open(p.error_log).read()[-600:])
finally:
    p.stop(); ls.close()
