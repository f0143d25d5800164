"""A new TLS connection carried by the keep-alive lane as one object (worker.newcomer) while all
it asks is one request and the close: what its client and the operator see, on that path and
on each way off it (it becomes a ClientConnection and a LaneOwner there).

Each new connection follows a whole exchange on another one, so an idle backend connection
waits in the pool: what makes a new TLS connection a Newcomer.  test_lane_first.py compares
its first requests of every kind with the Python path's, byte for byte; this file covers what
that comparison does not reach: failing and slow backends, JSON log lines, a reload with a
Newcomer silent or busy, and a full worker closing one for room.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time

import psutil
import pytest
from proxyproc import Proxy, wait_access
from rawbackend import RawBackend, respond
from support import handshake_in_memory, serve_tls, wait_for

pytestmark = pytest.mark.timeout(90)

MPM_SMALL = {"threads_per_child": 4, "max_request_workers": 4, "server_limit": 1}


def _backend(conn) -> None:
    while (head := conn.read_head()) is not None:
        if head.target == "/slow":              # past the route's timeout
            time.sleep(2.5)
        elif head.target == "/pause":           # within it
            time.sleep(1.0)
        elif head.target == "/drop":            # the connection dies with the request unanswered
            conn.reset()
            return
        conn.send(respond(200, f"{head.method} {head.target}".encode()))


def _proxy(tmp_path, environ=None, backend_timeout: float = 10.0, route_timeout: float = 1.5,
           **sections) -> tuple[Proxy, RawBackend]:
    backend = RawBackend(_backend, timeout=backend_timeout)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/", "timeout": route_timeout}], workers=1, environ=environ,
                  timeouts={"connect": 2, "proxy": 10, "client_header": 5, "keepalive": 3}, **sections)
    serve_tls(proxy, tmp_path)
    proxy.start()
    return proxy, backend


def _newcomer(proxy: Proxy) -> ssl.SSLSocket:
    """A new TLS connection, its handshake done, right after a whole exchange on another one:
    the pool holds an idle backend connection, so the lane takes it as a Newcomer."""
    with proxy.connect() as warm:
        warm.sendall(b"GET /warm HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _read_all(warm).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.05)
    return proxy.connect()


def _read_all(sock: ssl.SSLSocket, timeout: float = 5.0) -> bytes:
    """Everything until the close; a close without close_notify raises SSLEOFError."""
    sock.settimeout(timeout)
    sock.suppress_ragged_eofs = False
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def _ask(sock: ssl.SSLSocket, target: str) -> bytes:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    return _read_all(sock)


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_its_request_is_answered_logged_and_closed_with_close_notify(tmp_path, fmt):
    proxy, backend = _proxy(tmp_path, log={"format": fmt})
    try:
        with _newcomer(proxy) as sock:
            answer = _ask(sock, "/one")         # (a close without close_notify would raise)
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in head + b"\r\n" and body == b"GET /one"
        lines = wait_access(proxy, "/one")
        assert len(lines) == 1
        if fmt == "json":
            line = json.loads(lines[0])
            assert (line["client"], line["status"], line["request"]) == ("127.0.0.1", 200, "GET /one HTTP/1.1")
        else:
            assert lines[0].startswith("127.0.0.1 - - [") and '"GET /one HTTP/1.1" 200 8 ' in lines[0]
    finally:
        proxy.stop()
        backend.close()


def _with_the_last_flight(port: int, request: bytes) -> bytes:
    """A TLS 1.3 client whose request leaves in one segment with its Finished, as wrk's often
    does: the proxy's last handshake round reads it too, into the SSL object, where epoll will
    not report it (the Newcomer's `kick`).  Its answer, until the close."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        handshake_in_memory(sock, tls, incoming, outgoing)
        tls.write(request)
        sock.sendall(outgoing.read())           # the Finished and the request, in one send
        answer = b""
        while True:
            try:
                chunk = tls.read(65536)
                if not chunk:                   # its close_notify
                    return answer
                answer += chunk
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    return answer
                incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return answer


def test_a_request_that_came_with_the_handshakes_last_flight_is_answered(tmp_path):
    proxy, backend = _proxy(tmp_path)
    try:
        for n in range(5):
            _newcomer(proxy).close()            # (a whole exchange first: the next is a Newcomer)
            answer = _with_the_last_flight(proxy.port, f"GET /flight{n} HTTP/1.1\r\nHost: t\r\n"
                                                       "Connection: close\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(f"GET /flight{n}".encode()), answer
    finally:
        proxy.stop()
        backend.close()


def test_a_slow_backend_gets_504_and_a_dead_one_502(tmp_path):
    proxy, backend = _proxy(tmp_path)
    try:
        with _newcomer(proxy) as sock:
            started = time.monotonic()
            assert _ask(sock, "/slow").startswith(b"HTTP/1.1 504 ")
            assert time.monotonic() - started < 3.0
        with _newcomer(proxy) as sock:
            assert _ask(sock, "/drop").startswith(b"HTTP/1.1 502 ")
        with _newcomer(proxy) as sock:           # and the next one is served as ever
            assert _ask(sock, "/after").endswith(b"GET /after")
        assert ' 504 ' in wait_access(proxy, "/slow")[0] and ' 502 ' in wait_access(proxy, "/drop")[0]
    finally:
        proxy.stop()
        backend.close()


def test_a_reload_serves_a_silent_one_and_finishes_a_busy_one(tmp_path):
    """A TLS connection cannot move to the next generation: its worker serves it to the end."""
    proxy, backend = _proxy(tmp_path)
    try:
        silent = _newcomer(proxy)
        busy = _newcomer(proxy)
        busy.sendall(b"GET /pause HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)
        old = proxy.worker_pids()
        assert proxy.reload().returncode == 0
        wait_for(lambda: proxy.worker_pids() != old, 10, 0.05, "the next generation")
        assert _read_all(busy).endswith(b"GET /pause")
        assert _ask(silent, "/late").endswith(b"GET /late")
        silent.close()
        busy.close()
    finally:
        proxy.stop()
        backend.close()


def test_a_full_worker_closes_the_oldest_silent_one_for_room(tmp_path):
    proxy, backend = _proxy(tmp_path, mpm=MPM_SMALL)
    silent = []
    try:
        silent.append(_newcomer(proxy))
        for _ in range(3):
            silent.append(proxy.connect())
            time.sleep(0.01)                    # one loop turn apart: a clear order
        wait_for(lambda: proxy.status()["totals"]["connections"] == 4, 5, 0.05, "a full worker")
        with proxy.connect() as sock:
            assert _ask(sock, "/room").endswith(b"GET /room")
        assert _read_all(silent[0]) == b""      # closed for room, with close_notify
        assert _ask(silent[1], "/kept").endswith(b"GET /kept")
    finally:
        for sock in silent:
            sock.close()
        proxy.stop()
        backend.close()


def test_the_worker_survives_a_client_gone_mid_request(tmp_path):
    """A Newcomer whose client resets while its request is under way: the worker logs the
    exchange as aborted and serves the next one."""
    proxy, backend = _proxy(tmp_path)
    try:
        sock = _newcomer(proxy)
        sock.sendall(b"GET /pause HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))     # a reset
        sock.close()
        time.sleep(1.2)
        with _newcomer(proxy) as again:
            assert _ask(again, "/next").endswith(b"GET /next")
        assert proxy.worker_pids() and "Traceback" not in proxy.error_text()
    finally:
        proxy.stop()
        backend.close()


SITECUSTOMIZE = '''
import os


def _arm():
    import worker.newcomer
    import worker.process
    from worker.newcomer import Newcomer

    lane_request, lane_done = Newcomer.lane_request, Newcomer.lane_done
    exchange_done, head_writer = worker.process.Worker.exchange_done, worker.newcomer.head_writer

    def request_raises(self, raw):
        if raw.startswith(b"GET /boom "):
            raise RuntimeError("injected fault: newcomer request")
        return lane_request(self, raw)

    def done_raises(self, *args):
        if self.head.target == b"/boom-done":
            raise RuntimeError("injected fault: newcomer done")
        return lane_done(self, *args)

    def counting_raises(self, exchange, line=None):       # after the lane let the connection go
        if getattr(exchange, "head", None) is not None and exchange.head.target == b"/boom-log":
            raise RuntimeError("injected fault: newcomer counted")
        return exchange_done(self, exchange, line)

    def writer_raises(*args):                             # before the backend connection is pinned
        write = head_writer(*args)

        def writer(head, *rest):
            if head.target == b"/boom-writer":
                raise RuntimeError("injected fault: newcomer head")
            return write(head, *rest)
        return writer

    Newcomer.lane_request, Newcomer.lane_done = request_raises, done_raises
    worker.process.Worker.exchange_done = counting_raises
    worker.newcomer.head_writer = writer_raises


os.register_at_fork(after_in_child=_arm)
'''


@pytest.mark.parametrize("path", ["/boom", "/boom-writer", "/boom-done", "/boom-log"])
def test_a_fault_in_it_ends_its_connection_not_the_worker(tmp_path, path):
    """A bug met while it asks Python (its head, its response's end, the count after it) closes
    that connection at once and leaves nothing behind: no descriptor left in epoll to spin on
    once its client and the backend's idle connections are gone, no connection counted, no
    backend connection out of the pool (review 2026-12-06-newcomer #2, #3).  The worker and its
    next connection go on, and the error log has the traceback."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    proxy, backend = _proxy(tmp_path, environ={"PYTHONPATH": str(tmp_path / "inject")}, backend_timeout=1.0,
                           route_timeout=30)      # (no deadline comes to close what a fault left open)
    try:
        pids = proxy.worker_pids()
        with _newcomer(proxy) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            sock.settimeout(3)
            closed = True
            try:
                while sock.recv(65536):
                    pass
            except TimeoutError:
                closed = False
            except (ssl.SSLError, OSError):
                pass                    # closed, cleanly or not
            assert closed, "its connection stays open"
        with _newcomer(proxy) as sock:
            assert _ask(sock, "/after").endswith(b"GET /after")
        time.sleep(1.5)                 # the backend closes its idle connections after 1 s
        worker = psutil.Process(pids[0])
        spent = sum(worker.cpu_times()[:2])
        time.sleep(1.0)
        assert sum(worker.cpu_times()[:2]) - spent < 0.3, "the worker spins"
        assert proxy.worker_pids() == pids and proxy.status()["totals"]["connections"] == 0
        wait_for(lambda: "injected fault: newcomer" in proxy.error_text(), 5, 0.05, "the traceback")
    finally:
        proxy.stop()
        backend.close()
