"""A worker out of file descriptors when a request needs a backend connection: the client gets
503 (the proxy's shortage, not the member's failure) and the error log says so once per 10 s
with how often it happened, not once per request (as accepting does, worker.acceptor); once
descriptors are back, requests go through again."""

from __future__ import annotations

import os
import socket
import subprocess

import psutil
import pytest
from rawbackend import RawBackend, serve_simple
from rawsock import read_head, status_of


@pytest.fixture
def raw_backend():
    backend = RawBackend(serve_simple)
    yield backend
    backend.close()


def _status(port: int, path: str) -> int | None:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as client:
        client.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        return status_of(read_head(client)[0])


def test_requests_without_a_backend_socket_get_503_and_one_log_line(proxy_factory, raw_backend):
    proxy = proxy_factory([{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    worker = proxy.worker_pids()[0]
    soft, hard = psutil.Process(worker).rlimit(psutil.RLIMIT_NOFILE)
    held = len(os.listdir(f"/proc/{worker}/fd"))
    # One descriptor left: the client's connection takes it, its backend connection finds none.
    subprocess.run(["prlimit", f"--pid={worker}", f"--nofile={held + 1}:{hard}"], check=True, timeout=5)
    try:
        statuses = [_status(proxy.port, f"/x{n}") for n in range(20)]
    finally:
        subprocess.run(["prlimit", f"--pid={worker}", f"--nofile={soft}:{hard}"], check=True, timeout=5)
    assert statuses == [503] * 20
    assert _status(proxy.port, "/back") == 200
    said = proxy.error_text().count("no socket for a backend connection")
    assert said == 1, proxy.error_text()[-600:]         # (parent: 20, one per request)
