"""Every exchange gets its access-log line (issue #12): through a graceful stop, a reload, a
recycle (MaxConnectionsPerChild) and a tunnel hand-over under load, no line is lost and none
is written twice; a download the client abandons is logged with the bytes that reached it
and %X = X, as Apache does."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
from rawbackend import RawBackend, respond, serve_simple
from rawsock import read_head, status_of
from support import wait_for

LINE = re.compile(r'"GET /n/(?P<id>[\w-]+) HTTP/1\.1" (?P<status>\d{3}) (?P<bytes>\d+|-) .* (?P<conn>[X+-])$')


class Load:
    """`clients` threads sending numbered keep-alive requests until stopped; each request
    that got its whole response is recorded (a reconnect follows any failure)."""

    def __init__(self, port: int, clients: int = 8, close_every: int = 0):
        self.port = port
        self.close_every = close_every
        self.answered: set[str] = set()
        self.running = True
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self, n: int) -> None:
        sent = 0
        sock = None
        while self.running:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sent += 1
                ident = f"{n}-{sent}"
                close = self.close_every and sent % self.close_every == 0
                sock.sendall(f"GET /n/{ident} HTTP/1.1\r\nHost: t\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}"
                             f"\r\n".encode())
                head, buf = read_head(sock)
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                while len(buf) < length:
                    more = sock.recv(65536)
                    if not more:
                        raise ConnectionError("closed mid-body")
                    buf += more
                if status_of(head) == 200:
                    self.answered.add(ident)
                if close or b"connection: close" in head.lower():
                    sock.close()
                    sock = None
            except (OSError, ValueError, AttributeError):
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.01)

    def stop(self) -> set[str]:
        self.running = False
        for thread in self.threads:
            thread.join(10)
        return self.answered


def _logged(proxy) -> list[str]:
    return [m["id"] for line in proxy.access_lines() if (m := LINE.search(line))]


def _assert_every_answer_logged_once(proxy, answered: set[str]) -> None:
    logged = _logged(proxy)
    assert len(answered) > 200, f"the load did too little to tell ({len(answered)} answers)"
    duplicates = {i for i in logged if logged.count(i) > 1}
    assert not duplicates, sorted(duplicates)[:10]
    missing = answered - set(logged)
    assert not missing, f"{len(missing)} answered requests have no access-log line, e.g. {sorted(missing)[:5]}"


@pytest.fixture
def backend():
    server = RawBackend(lambda conn: serve_simple(conn, lambda head, body: respond(200, b"x" * 200)))
    yield server
    server.close()


def test_no_line_lost_through_a_graceful_stop_under_load(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    load = Load(proxy.port)
    time.sleep(1.0)
    result = proxy.mpmctl("stop")
    assert result.returncode == 0, result.stderr
    proxy.proc.wait(20)
    _assert_every_answer_logged_once(proxy, load.stop())


def test_no_line_lost_through_reloads_under_load(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    load = Load(proxy.port)
    for generation in (2, 3, 4):
        time.sleep(0.4)
        proxy.reload()
        proxy.wait_ready(generation=generation)
    time.sleep(0.4)
    answered = load.stop()
    proxy.stop()
    _assert_every_answer_logged_once(proxy, answered)


def test_no_line_lost_when_workers_recycle_under_load(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], mpm={"max_connections_per_child": 25})
    load = Load(proxy.port, close_every=5)
    wait_for(lambda: "MaxConnectionsPerChild (25) reached" in proxy.error_text(), 15, 0.1, "a worker to recycle")
    time.sleep(1.0)
    answered = load.stop()
    proxy.stop()
    assert proxy.error_text().count("MaxConnectionsPerChild") >= 2
    _assert_every_answer_logged_once(proxy, answered)


def test_tunnels_handed_over_are_logged_once_by_the_worker_they_end_on(proxy_factory, backend):
    """A reload moves plain tunnels to the new generation; each gets one line, written by
    whoever holds it when it ends, while HTTP requests go on beside them."""
    echo = RawBackend(_echo_upgrade)
    try:
        proxy = proxy_factory([{"path": "/ws/", "to": echo.url.replace("http", "ws") + "/ws/"},
                               {"path": "/", "to": backend.url + "/"}])
        load = Load(proxy.port, clients=4)
        tunnels = [_open_tunnel(proxy.port, i) for i in range(20)]
        proxy.reload()
        proxy.wait_ready(generation=2)
        wait_for(lambda: "hand-over: adopted" in proxy.error_text(), 10, 0.05, "the hand-over")
        for sock in tunnels:
            sock.sendall(b"after")
            assert sock.recv(5) == b"after"
            sock.close()
        time.sleep(0.5)
        answered = load.stop()
        proxy.stop()
        lines = [line for line in proxy.access_lines() if '"GET /ws/t' in line]
        idents = sorted(re.search(r"/ws/t(\d+)", line).group(1) for line in lines)
        assert idents == sorted(str(i) for i in range(20)), idents
        _assert_every_answer_logged_once(proxy, answered)
    finally:
        echo.close()


def _echo_upgrade(conn):
    head = conn.read_head()
    if head is None:
        return
    conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    while True:
        data = conn.sock.recv(65536)
        if not data:
            return
        conn.sock.sendall(data)


def _open_tunnel(port: int, n: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /ws/t{n} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".encode())
    head, rest = read_head(sock)
    assert status_of(head) == 101 and not rest
    return sock


# == an abandoned download ==========================================================================
BIG = 200 << 20
CHUNK = b"d" * (1 << 20)


def _big_download(conn):
    head = conn.read_head()
    if head is None:
        return
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
    try:
        for _ in range(BIG // len(CHUNK)):
            conn.sock.sendall(CHUNK)
    except OSError:
        pass          # the proxy dropped us when the client went away


@pytest.mark.parametrize("splice", ["1", "0"])
def test_an_abandoned_download_is_logged_with_the_bytes_that_reached_the_client(proxy_factory, splice):
    backend = RawBackend(_big_download)
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, environ={"MPM_SPLICE": splice})
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"GET /n/big HTTP/1.1\r\nHost: t\r\n\r\n")
            head, buf = read_head(sock)
            got = len(buf)
            while got < 20 << 20:
                got += len(sock.recv(1 << 20))
        lines = wait_for(lambda: [m for line in proxy.access_lines() if (m := LINE.search(line))], 10, 0.05,
                         "the aborted download's line")
        assert len(lines) == 1
        m = lines[0]
        assert m["status"] == "200" and m["conn"] == "X", m.string
        # What left the proxy: at least what the client read, at most that plus what the
        # kernel buffers of this loopback connection could hold.
        assert 20 << 20 <= int(m["bytes"]) <= (20 << 20) + (16 << 20), m.string
    finally:
        backend.close()
