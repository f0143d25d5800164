"""Shared harness of the tunnel review's repros: a real mpm master (tests/proxyproc.Proxy) in a
temporary directory, scripted raw backends (tests/rawbackend.RawBackend), raw-socket clients.
Every repro stops its proxy (by the master's pid, Proxy.stop) and its backends at exit."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.chdir(ROOT)

from proxyproc import Proxy  # noqa: E402
from rawbackend import RawBackend  # noqa: E402
from rawsock import read_head, status_of  # noqa: E402
from wsutil import switch_response, upgrade_request  # noqa: E402

__all__ = ["Proxy", "RawBackend", "read_head", "status_of", "switch_response", "upgrade_request",
           "proxy", "open_tunnel", "reset", "rss_kib", "status"]


@contextlib.contextmanager
def proxy(routes, **sections):
    with tempfile.TemporaryDirectory(prefix="tunnels-review-") as d:
        p = Proxy(d, routes, **sections)
        try:
            p.start()
            yield p
        finally:
            p.stop()


def open_tunnel(p, path: str, rcvbuf: int | None = None, extra: str = "", source: str | None = None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source:
        s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", p.port))
    s.sendall(upgrade_request(path, extra=extra) if extra else upgrade_request(path))
    head, buf = read_head(s)
    return s, head, buf


def reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def status(p) -> dict:
    for _ in range(20):
        st = p.status()
        if st is not None:
            return st
        time.sleep(0.1)
    raise RuntimeError("no status")
