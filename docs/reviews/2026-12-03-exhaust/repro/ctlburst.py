# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/ctlburst.py
import tempfile
import sys, os, time, socket, subprocess, threading
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
from mpm.control import request
d=tempfile.mkdtemp(prefix="exhaust-"); 
p = Proxy(d, [{"path": "/", "to": "http://127.0.0.1:1/"}], workers=1)
p.start()
path = os.path.join(d, "run/mpm.sock")
res = {}; lock = threading.Lock(); go = threading.Event()
def one():
    go.wait()
    try: request(path, {"cmd": "status"}, timeout=10); k = "ok"
    except Exception as e: k = repr(e)[:60]
    with lock: res[k] = res.get(k, 0) + 1
try:
    ts = [threading.Thread(target=one) for _ in range(int(sys.argv[1]))]
    for t in ts: t.start()
    go.set()
    for t in ts: t.join()
    print(res)
finally:
    p.stop()
