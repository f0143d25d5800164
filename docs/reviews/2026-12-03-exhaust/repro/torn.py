# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/torn.py
import tempfile
import sys, os, time, signal, subprocess, re
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
d = tempfile.mkdtemp(prefix="exhaust-"); 
fifo = d + "/access.fifo"; os.mkfifo(fifo)
out = open(d + "/got", "wb")
cat = subprocess.Popen(["cat", fifo], stdout=out)
p = Proxy(d, [{"path": "/x/", "to": "http://127.0.0.1:1/"}], workers=2, log={"access": fifo, "level": "info", "error": d + "/error.log"})
p.start()
try:
    os.kill(cat.pid, signal.SIGSTOP)
    ua = "U" * int(sys.argv[1]) if len(sys.argv) > 1 else "w"
    subprocess.run(["wrk", "-t2", "-c16", "-d2", "-H", f"User-Agent: {ua}", f"http://127.0.0.1:{p.port}/"], capture_output=True)
    os.kill(cat.pid, signal.SIGCONT)
    time.sleep(3)
finally:
    p.stop()
    cat.wait(5)
data = open(d + "/got", "rb").read()
lines = data.split(b"\n")[:-1]
bad = [l for l in lines if not re.match(rb'^127\.0\.0\.1 - - \[[^\]]+\] "GET / HTTP/1\.1" 404 \d+ "-" "U*w?" \d+ "-" "-" [+X-]$', l) and not l.startswith(b"[")]
print("lines", len(lines), "bad", len(bad)); print(bad[:3])
