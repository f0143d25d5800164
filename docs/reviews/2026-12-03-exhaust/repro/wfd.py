# cd /tmp/fix-exhaust && /work/main/.venv/bin/python docs/reviews/2026-12-03-exhaust/repro/wfd.py
import tempfile
import sys, os, time, socket, subprocess, psutil
sys.path[:0] = [".", "tests"]   # run from the clone root
from proxyproc import Proxy
from rawbackend import RawBackend, serve_simple, echo_after_101
be = RawBackend(serve_simple); wsb = RawBackend(echo_after_101)
d=tempfile.mkdtemp(prefix="exhaust-"); 
p = Proxy(d, [{"path": "/ws/", "to": wsb.ws_url + "/ws/"}, {"path": "/", "to": be.url + "/"}], workers=1)
p.start()
try:
    w = p.worker_pids()[0]
    pr = psutil.Process(w); hard = pr.rlimit(psutil.RLIMIT_NOFILE)[1]
    # a websocket tunnel first
    t = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    t.sendall(b"GET /ws/ HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    print(t.recv(4096)[:40])
    n = len(os.listdir(f"/proc/{w}/fd"))
    print("fds", n)
    subprocess.run(["prlimit", f"--pid={w}", f"--nofile={n}:{hard}"], check=True)
    c = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    c.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
    try: print("plain:", c.recv(4096)[:60])
    except Exception as e: print("plain:", e)
    t.sendall(b"hello-tunnel"*20000)
    buf=b""
    try:
        while len(buf) < 240000: buf += t.recv(65536)
    except Exception as e: print("tunnel:", e)
    print("tunnel:", len(buf))
    c2 = socket.create_connection(("127.0.0.1", p.port), timeout=2)
    c2.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    try: print("second:", c2.recv(4096)[:60])
    except Exception as e: print("second:", e)
    time.sleep(0.5)
    print("worker alive", pr.is_running(), "cpu", pr.cpu_percent(0.5))
    print(open(p.error_log).read()[-1500:])
    print(p.stderr_text()[-1500:])
finally:
    p.stop(); be.close(); wsb.close()
