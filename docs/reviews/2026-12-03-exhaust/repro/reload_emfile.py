# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/reload_emfile.py
import tempfile
import sys, os, time, signal, subprocess, psutil
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
d=tempfile.mkdtemp(prefix="exhaust-"); 
p = Proxy(d, [{"path": "/", "to": "http://127.0.0.1:1/"}], workers=1)
p.start()
try:
    m = p.proc.pid; pr = psutil.Process(m); soft, hard = pr.rlimit(psutil.RLIMIT_NOFILE)
    n = len(os.listdir(f"/proc/{m}/fd"))
    w0 = p.worker_pids()
    subprocess.run(["prlimit", f"--pid={m}", f"--nofile={n}:{hard}"], check=True)
    os.kill(m, signal.SIGHUP)
    time.sleep(2)
    print("workers before", w0, "children", [c.pid for c in pr.children()], "master alive", p.proc.poll() is None)
    subprocess.run(["prlimit", f"--pid={m}", f"--nofile={soft}:{hard}"], check=True)
    time.sleep(1.5)
    print("workers later", p.worker_pids())
    print(open(p.error_log).read()[-2500:])
finally:
    p.stop()
