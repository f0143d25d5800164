"""Shared harness for the repros: tests/rawbackend.RawBackend (scripted backend threads) and a
real mpm master (tests/proxyproc.Proxy), stopped by pid at exit."""
import atexit
import os
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy  # noqa: E402
from rawbackend import RawBackend, respond  # noqa: E402,F401


def proxy(routes, workers=1, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="bodies-"), routes, workers=workers, **sections).start()
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


def access(p, marker, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        lines = [x for x in p.access_lines() if marker in x]
        if lines:
            return lines
        time.sleep(0.05)
    return []
