# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/ctlflood.py
import tempfile
import sys, os, time, socket, subprocess, threading
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
d=tempfile.mkdtemp(prefix="exhaust-"); 
p = Proxy(d, [{"path": "/", "to": "http://127.0.0.1:1/"}], workers=1)
p.start()
path = os.path.join(d, "run/mpm.sock")
stop = False; made = [0]
def flood():
    held = []
    while not stop:
        s = socket.socket(socket.AF_UNIX); s.settimeout(1)
        try: s.connect(path); held.append(s); made[0] += 1
        except OSError: s.close()
        if len(held) > 50: held.pop(0).close()
    for s in held: s.close()
ts = [threading.Thread(target=flood) for _ in range(4)]
for t in ts: t.start()
try:
    time.sleep(0.5)
    from mpm.control import request
    res = {}
    for i in range(20):
        try: request(path, {"cmd": "status"}, timeout=10); k = "ok"
        except Exception as e: k = repr(e)[:80]
        res[k] = res.get(k, 0) + 1
    print(res)
    print("flood connections", made[0])
finally:
    stop = True
    for t in ts: t.join()
    p.stop()
