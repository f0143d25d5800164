"""Shared harness for the soak repros: a real mpm master (tests/proxyproc.Proxy, stopped by pid
at exit) in front of the soak backend (../soak_backend.py, its own process, killed by pid)."""

import atexit
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy  # noqa: E402,F401


def backend() -> int:
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "soak_backend.py")], stdout=subprocess.PIPE,
                            text=True)
    atexit.register(lambda: (proc.kill(), proc.wait()))
    return int(proc.stdout.readline().split()[-1])


def proxy(routes, workers=1, **sections) -> Proxy:
    p = Proxy(tempfile.mkdtemp(prefix="soak-repro-"), routes, workers=workers, **sections)
    p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
    p.start()
    atexit.register(p.stop)
    return p


def wait_lines(p: Proxy, marker: str, expected: int, timeout: float = 4.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = sum(1 for line in p.access_lines() if marker in line)
        if n >= expected or time.monotonic() > deadline:
            return n
        time.sleep(0.05)
