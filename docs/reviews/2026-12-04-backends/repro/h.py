"""Shared harness: a real mpm master run from a frozen copy of the tree (MPM_ROOT, default
/tmp/rev-backends: `git -C /work/main archive HEAD | tar -x -C /tmp/rev-backends` plus
conf/*.so), tests/rawbackend.RawBackend for scripted backends. Everything stopped at exit."""
import atexit
import os
import socket
import sys
import tempfile
import time

ROOT = os.environ.get("MPM_ROOT", "/tmp/rev-backends")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy  # noqa: E402
from rawbackend import RawBackend, respond  # noqa: E402,F401


def proxy(routes, workers=1, h2c=False, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="rev-backends-"), routes, workers=workers, **sections)
    if h2c:
        p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
    p.start()
    atexit.register(p.stop)
    return p


def recv_all(sock, seconds=3.0):
    """Everything until EOF, a reset or `seconds` of silence: (bytes, how it ended)."""
    out = bytearray()
    sock.settimeout(seconds)
    try:
        while True:
            d = sock.recv(1 << 20)
            if not d:
                return bytes(out), "EOF"
            out += d
    except (TimeoutError, socket.timeout):
        return bytes(out), "silence"
    except OSError as e:
        return bytes(out), f"error {e.errno}"


def ask(p, data, seconds=3.0):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(data)
    out = recv_all(s, seconds)
    s.close()
    return out


def access(p, marker, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        lines = [x for x in p.access_lines() if marker in x]
        if lines:
            return lines
        time.sleep(0.05)
    return []


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return -1
