"""Shared harness of the hand-over review's repros: a real mpm master (tests/proxyproc.Proxy)
in a temporary directory, the bundled bench backend or a scripted raw backend, raw-socket
clients, wrk/h2load where said.  Every repro stops what it starts (the proxy by its master's
pid, Proxy.stop; backends by their own close) at exit.

MPM_ROOT=/path/to/another/checkout runs the same repro against that checkout (the review ran
each fault's repro against the parent commit bf89156 and against the fixed clone)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

ROOT = os.environ.get("MPM_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.chdir(ROOT)

from backends import BenchBackend  # noqa: E402
from proxyproc import Proxy  # noqa: E402
from rawbackend import RawBackend, respond, serve_simple  # noqa: E402
from rawsock import http_response_body, read_head, status_of  # noqa: E402
from support import free_port, wait_for  # noqa: E402

__all__ = ["ROOT", "BenchBackend", "Proxy", "RawBackend", "respond", "serve_simple", "http_response_body",
           "read_head", "status_of", "free_port", "wait_for", "bench", "raw", "proxy", "stop_new_master",
           "proxy_read_all"]


@contextlib.contextmanager
def bench():
    with tempfile.TemporaryDirectory(prefix="handover-review-be-") as d:
        backend = BenchBackend(d)
        try:
            yield backend
        finally:
            backend.close()


@contextlib.contextmanager
def raw(handler=serve_simple):
    backend = RawBackend(handler, backlog=256)
    try:
        yield backend
    finally:
        for event in list(backend.events.values()):
            event.set()
        backend.close()


@contextlib.contextmanager
def proxy(routes, start: bool = True, **sections):
    with tempfile.TemporaryDirectory(prefix="handover-review-") as d:
        p = Proxy(d, routes, **sections)
        try:
            if start:
                p.start()
            yield p
        finally:
            stop_new_master(p)
            p.stop()


def stop_new_master(p) -> None:
    """After `mpmctl upgrade` the serving master is no child of ours: stopped by its pid."""
    import psutil
    try:
        pid = int(open(os.path.join(p.dir, "run", "mpm.pid")).read())
    except (OSError, ValueError):
        return
    if p.proc is not None and pid != p.proc.pid:
        p.mpmctl("stop")
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 20, 0.1,
                 "the new master to stop")


def proxy_read_all(sock, proxy_port: int) -> bool:
    """The proxy's end of `sock` has an empty receive queue (/proc/net/tcp): it read what we sent."""
    client_port = sock.getsockname()[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == proxy_port and int(fields[2].split(":")[1], 16) == client_port:
                return int(fields[4].split(":")[1], 16) == 0
    return False
