# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/health_emfile.py
import tempfile
import sys, os, time, socket, subprocess, psutil
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
from rawbackend import RawBackend, serve_simple
be = RawBackend(serve_simple)
d=tempfile.mkdtemp(prefix="exhaust-"); 
HEALTH = {"method": "GET", "path": "/health", "expect": "^200$", "interval": 0.25, "passes": 2, "fails": 1, "timeout": 1}
p = Proxy(d, [{"path": "/", "to": "balancer://app/"}], workers=1,
          balancers={"app": {"health": HEALTH, "members": [{"url": be.url}]}})
p.start()
try:
    m = p.proc.pid; pr = psutil.Process(m); hard = pr.rlimit(psutil.RLIMIT_NOFILE)[1]; soft = pr.rlimit(psutil.RLIMIT_NOFILE)[0]
    n = len(os.listdir(f"/proc/{m}/fd"))
    subprocess.run(["prlimit", f"--pid={m}", f"--nofile={n}:{hard}"], check=True)
    time.sleep(2)
    subprocess.run(["prlimit", f"--pid={m}", f"--nofile={soft}:{hard}"], check=True)
    t = open(p.error_log).read()
    print("tracebacks", t.count("Traceback"), "carrying on", t.count("carrying on"), "lines", len(t.splitlines()))
    print(t[-1200:])
finally:
    p.stop(); be.close()
