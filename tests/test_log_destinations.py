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


def _start_with(proxy: Proxy, stdout: socket.socket | None = None, stderr: socket.socket | None = None) -> None:
    """Proxy.start, with the master's (and so the workers') stdout or stderr on a socket."""
    proxy.write_config()
    proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
    proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
    proxy.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path],
                                  stdout=(stdout or proxy.stdout).fileno(), stderr=(stderr or proxy.stderr).fileno(),
                                  cwd=ROOT)
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


def _read_until(sock: socket.socket, received: bytearray, needle: bytes, timeout: float = 5.0) -> None:
    sock.settimeout(0.2)

    def found() -> bool:
        try:
            received.extend(sock.recv(1 << 20))
        except TimeoutError:
            pass
        return needle in received
    wait_for(found, timeout, 0, f"{needle!r} through the socket")


def test_a_journald_socket_that_stops_reading_does_not_stop_the_worker(tmp_path, raw_backend):
    """stdout is a stream socket nobody reads (a stalled journald), `log.access: "-"`: the worker
    goes on serving, and the lines it queued meanwhile arrive once the socket is read again."""
    journald, stdout = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stdout.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)     # full after a few dozen lines
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.config["log"]["access"] = "-"
    try:
        _start_with(proxy, stdout=stdout)
        stdout.close()
        count = 1000        # 64 KiB are batched before the first write: ~550 lines
        assert _keepalive_requests(proxy.port, count) == count     # (parent: 551, then no answer)
        received = bytearray()
        _read_until(journald, received, b'"GET /logged/%d ' % (count - 1))
        assert received.count(b'"GET /logged/') == count
    finally:
        journald.close()
        proxy.stop()


def test_the_master_goes_on_when_journald_stops_reading_its_log(tmp_path, raw_backend):
    """stderr is a stream socket that is full (a stalled journald), `log.error: "-"`: a reload
    is answered and done, `mpmctl status` answers, and the master's lines arrive once the
    socket is read again."""
    journald, stderr = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.config["log"]["error"] = "-"
    try:
        _start_with(proxy, stderr=stderr)
        journald.setblocking(False)
        try:
            while journald.recv(1 << 20):       # what the master said at start: read
                pass
        except BlockingIOError:
            pass
        try:
            while True:                         # then the socket is full: nobody reads
                stderr.send(b"-" * 4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        try:
            reload = proxy.mpmctl("reload", timeout=5)
            status = proxy.mpmctl("status", timeout=5)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the master blocked on its log: {exc}") from None   # (parent: here)
        assert reload.returncode == 0 and status.returncode == 0, (reload, status)
        proxy.wait_ready(generation=2)
        received = bytearray()
        _read_until(journald, received, b"reloaded: generation 2")
    finally:
        journald.close()
        stderr.close()
        proxy.stop()
