"""Shared harness for the log review's repros: a real mpm master (from MPM_ROOT, default
/tmp/review-logs, a clone of /work/main with conf/*.so copied in) via tests/proxyproc.Proxy,
tests/rawbackend.RawBackend for scripted backends.  Everything started is stopped at exit."""
import atexit
import os
import signal
import socket
import sys
import tempfile
import time

ROOT = os.environ.get("MPM_ROOT", "/tmp/review-logs")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy  # noqa: E402
from rawbackend import RawBackend, respond, serve_simple, echo_after_101  # noqa: E402,F401

# A hard ceiling: no repro runs longer than this.
signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("repro timeout")))
signal.alarm(int(os.environ.get("REPRO_TIMEOUT", "90")))


def proxy(routes, workers=1, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), routes, workers=workers, **sections)
    atexit.register(p.stop)
    p.start()
    return p


def send(p, data: bytes, timeout=3.0, read=True, shut=False) -> bytes:
    s = p.connect(timeout=timeout)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    if read:
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except (TimeoutError, socket.timeout, ConnectionResetError):
            pass
    s.close()
    return out


def wait_lines(p, n, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = p.access_lines()
        if len(lines) >= n:
            return lines
        time.sleep(0.1)
    return p.access_lines()
