"""Log destinations that misbehave must cost the server nothing but the lines they do not take
(review 2026-12-03-operating): journald's stream socket that stops reading (under systemd,
stdout and stderr are that socket), a log reader that stops reading a pipe, a full disk.

Real masters and workers, real sockets on loopback; the "journald" is one end of a Unix
stream socket pair that the test reads, or does not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from proxyproc import Proxy
from rawbackend import RawBackend
from support import ROOT, wait_for

REQUEST = b"GET /logged/%d HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture
def raw_backend():
    backend = RawBackend()
    yield backend
    backend.close()


def _start_with_stdout(proxy: Proxy, stdout: socket.socket) -> None:
    """Proxy.start, with the master's (and so the workers') stdout on `stdout`."""
    proxy.write_config()
    proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
    proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
    proxy.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path],
                                  stdout=stdout.fileno(), stderr=proxy.stderr, cwd=ROOT)
    proxy.seen_pids.add(proxy.proc.pid)
    proxy.wait_ready()


def _keepalive_requests(port: int, count: int, timeout: float = 2.0) -> int:
    """`count` requests one after the other on one connection; how many were answered."""
    answered = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for n in range(count):
                sock.sendall(REQUEST % n)
                data = b""
                while b"raw:/logged/%d" % n not in data:
                    more = sock.recv(65536)
                    if not more:
                        return answered
                    data += more
                answered += 1
        except TimeoutError:
            pass
    return answered


def test_a_journald_socket_that_stops_reading_does_not_stop_the_worker(tmp_path, raw_backend):
    """stdout is a stream socket nobody reads (a stalled journald), `log.access: "-"`: the worker
    goes on serving, and the lines it queued meanwhile arrive once the socket is read again."""
    journald, stdout = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stdout.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)     # full after a few dozen lines
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.config["log"]["access"] = "-"
    try:
        _start_with_stdout(proxy, stdout)
        stdout.close()
        count = 1000        # 64 KiB are batched before the first write: ~550 lines
        assert _keepalive_requests(proxy.port, count) == count     # (parent: 551, then no answer)
        received = bytearray()
        journald.settimeout(0.2)

        def all_logged() -> bool:
            try:
                received.extend(journald.recv(1 << 20))
            except TimeoutError:
                pass
            return received.count(b'"GET /logged/') >= count
        wait_for(all_logged, 5, 0, f"the {count} access lines through the socket once it is read")
    finally:
        journald.close()
        proxy.stop()
