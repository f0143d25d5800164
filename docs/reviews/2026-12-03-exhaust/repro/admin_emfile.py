# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/admin_emfile.py
import tempfile
import sys, os, time, socket, subprocess, psutil
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
from admin_util import admin_section, admin_port
p = Proxy(tempfile.mkdtemp(prefix="exhaust-"), [{"path": "/", "to": "http://127.0.0.1:1/"}], workers=1, admin=admin_section())
p.start()
try:
    m = p.proc.pid
    n = len(os.listdir(f"/proc/{m}/fd"))
    subprocess.run(["prlimit", f"--pid={m}", f"--nofile={n+2}:{n+2}"], check=True)
    port = admin_port(p)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
    proc = psutil.Process(m); proc.cpu_percent()
    time.sleep(1.5)
    print("master cpu%", proc.cpu_percent())
    err = open(p.error_log).read() + p.stderr_text()
    print("accept failed lines:", err.count("admin listener"))
finally:
    p.stop()
