# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/stderrblock.py
import tempfile
import sys, os, time, socket, subprocess, psutil
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
from support import ROOT
from rawbackend import RawBackend, serve_simple
be = RawBackend(serve_simple)
d=tempfile.mkdtemp(prefix="exhaust-"); 
p = Proxy(d, [{"path": "/", "to": be.url + "/"}], workers=1, log={"access": "/dev/full", "error": d + "/error.log", "level": "info"})
r, w = os.pipe()
filler = os.open(f"/proc/self/fd/{w}", os.O_WRONLY | os.O_NONBLOCK)
try:
    while True: os.write(filler, b"x" * 65536)
except BlockingIOError: pass
p.write_config()
p.stdout = open(d + "/stdout.log", "wb"); p.stderr = open(d + "/stderr.log", "wb")
p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path], stdout=p.stdout, stderr=w, cwd=ROOT)
p.seen_pids.add(p.proc.pid)
os.close(w)
try:
    p.wait_ready()
    ok = 0
    for i in range(5):
        try:
            with socket.create_connection(("127.0.0.1", p.port), timeout=2) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"); ok += b"200" in c.recv(4096)
        except Exception as e:
            print("req", i, e)
        time.sleep(0.3)
    print("answered", ok, "of 5")
    wchan = [open(f"/proc/{pid}/wchan").read() for pid in p.worker_pids()]
    print("worker wchan", wchan)
finally:
    os.close(r); os.close(filler)
    p.stop(); be.close()
