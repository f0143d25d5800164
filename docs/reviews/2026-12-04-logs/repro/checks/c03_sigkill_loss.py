import os
import sys, time, socket, threading, os, signal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *
be = RawBackend()
p = proxy([{"path": "/", "to": be.url}], workers=1)
pid = p.worker_pids()[0]
s = p.connect(); n=0
t0=time.monotonic(); killed=False
try:
    while time.monotonic()-t0 < 1.6:
        s.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % n); buf=b""
        while not buf.endswith(b"/k%d" % n):
            d = s.recv(65536)
            if not d: raise ConnectionError
            buf += d
        n+=1
        if not killed and time.monotonic()-t0 > 1.5:
            os.kill(pid, signal.SIGKILL); killed=True
except (ConnectionError, OSError): pass
s.close()
time.sleep(1)
print("answered", n, "logged", len(p.access_lines()))
