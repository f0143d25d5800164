"""Shared harness: a real mpm master from MPM_ROOT (default /tmp/review-today, a clone of
/work/main with conf/*.so copied in; MPM_ROOT=/tmp/review-base is a406ab1, the code before
today) through tests/proxyproc.Proxy, and tests/rawbackend.RawBackend for scripted backends.
Every proxy started is stopped (Proxy.stop kills its pids) at exit; a SIGALRM ceiling bounds
each script."""
import atexit
import os
import signal
import socket
import sys
import tempfile
import time

ROOT = os.environ.get("MPM_ROOT", "/tmp/review-today")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy  # noqa: E402,F401
from rawbackend import RawBackend, respond, serve_simple  # noqa: E402,F401


def _alarm(*_):
    raise TimeoutError("repro timeout")


signal.signal(signal.SIGALRM, _alarm)
signal.alarm(int(os.environ.get("REPRO_TIMEOUT", "60")))


def proxy(routes, workers=1, h2c=False, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="rev-today-"), routes, workers=workers, **sections)
    if h2c:                                   # HTTP/2 with prior knowledge on the plain port
        p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
    atexit.register(p.stop)
    p.start()
    return p


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
