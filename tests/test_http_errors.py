"""Backend failures and clients that go away (issue #3).

Before the response starts, a failure is answered by the proxy: 502 (refused, reset,
invalid response) or 504 (connect or read timeout), with a short body and an
error-log line naming the route and the backend.  Once the response has started, the
only honest thing is to close the client connection.  A client that goes away in the
middle gets its backend connection closed (the backend sees EOF), never pooled.

One master (workers=1, `timeouts.proxy: 1`, `timeouts.connect: 1`) with a route per
failure; the raw backend `E` behind most of them runs the script each test sets.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from httpclient import Reader
from proxyproc import running_proxy
from rawbackend import RawBackend, RawConn, respond
from rawsock import recv_until_close
from support import free_port, wait_for

SHORT = 1024   # an error body is a short page, not a backend's


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = RawBackend()
    refused_port = free_port()
    # A listener that never accepts, its one-slot queue already full: connects to it hang.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    stuck_port = stuck.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", stuck_port))
        fillers.append(s)
    routes = [
        {"path": "/refused/", "to": f"http://127.0.0.1:{refused_port}/"},
        {"path": "/stuck/", "to": f"http://127.0.0.1:{stuck_port}/"},
        {"path": "/reset/", "to": e.url + "/"},
        {"path": "/bad/", "to": e.url + "/"},
        {"path": "/hang/", "to": e.url + "/"},
        {"path": "/cut/", "to": e.url + "/", "timeout": 10},
        {"path": "/abort/", "to": e.url + "/", "timeout": 10},
    ]
    with running_proxy(tmp_path_factory.mktemp("errors"), routes, workers=1,
                       timeouts={"connect": 1, "proxy": 1, "client_header": 5, "keepalive": 5}) as proxy:
        yield type("Env", (), {"proxy": proxy, "e": e, "refused_port": refused_port, "stuck_port": stuck_port})
    e.close()
    for s in fillers:
        s.close()
    stuck.close()


def _script(env, fn) -> None:
    env.e.reset_records()
    env.e.handler = fn


def _exchange(env, request: bytes, timeout: float = 5.0):
    """(response, seconds, closed-after) for one request on a fresh connection."""
    with env.proxy.connect(timeout) as sock:
        started = time.monotonic()
        sock.sendall(request)
        response = Reader(sock, timeout).response()
        elapsed = time.monotonic() - started
        _, closed = recv_until_close(sock, 0.5)
    return response, elapsed, closed


def _assert_logged(env, route: str, backend: str, count_before: int = 0) -> str:
    """The newest error-log line naming `route` and `backend`, once there are more than `count_before`."""
    def lines():
        return [line for line in env.proxy.error_text().splitlines() if route in line and backend in line]
    deadline = time.monotonic() + 3
    while len(lines()) <= count_before and time.monotonic() < deadline:
        time.sleep(0.02)
    found = lines()
    assert len(found) > count_before, \
        f"no error-log line naming route {route} and backend {backend}:\n{env.proxy.error_text()[-1500:]}"
    return found[-1]


def _log_count(env, route: str, backend: str) -> int:
    return sum(1 for line in env.proxy.error_text().splitlines() if route in line and backend in line)


# == before the response: 502 / 504 =====================================================================
@pytest.mark.timeout(15)
def test_connection_refused_is_502(env):
    response, elapsed, closed = _exchange(env, b"GET /refused/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 502
    assert 0 < len(response.body) < SHORT
    assert elapsed < 1.0, "a refused connection is known at once"
    assert not closed, "a 502 to a request read whole keeps the connection (nginx, Apache)"
    _assert_logged(env, "/refused/", f"http://127.0.0.1:{env.refused_port}")


@pytest.mark.timeout(15)
def test_connect_timeout_is_504_after_timeouts_connect(env):
    """A backend whose listen queue is full: the SYN is never answered."""
    response, elapsed, _ = _exchange(env, b"GET /stuck/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 504
    assert 0 < len(response.body) < SHORT
    assert 0.9 <= elapsed < 3.0, f"answered after {elapsed:.2f}s with timeouts.connect = 1"
    _assert_logged(env, "/stuck/", f"http://127.0.0.1:{env.stuck_port}")


@pytest.mark.timeout(15)
def test_backend_reset_after_the_request_head_is_502(env):
    def reset(conn: RawConn) -> None:
        conn.read_head()
        conn.reset()
    _script(env, reset)
    before = _log_count(env, "/reset/", env.e.url)
    response, _, _ = _exchange(env, b"GET /reset/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 502
    assert 0 < len(response.body) < SHORT
    _assert_logged(env, "/reset/", env.e.url, before)


@pytest.mark.timeout(15)
def test_backend_reset_while_the_request_body_streams_is_502(env):
    """The client is still sending its body when the backend resets: it gets the 502."""
    def reset(conn: RawConn) -> None:
        conn.read_head()
        conn.exactly(1000)
        conn.reset()
    _script(env, reset)
    with env.proxy.connect() as sock:
        sock.sendall(b"POST /reset/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"a" * 2000)
        response = Reader(sock, 5).response()
        _, closed = recv_until_close(sock, 3)
    assert response.status == 502
    assert 0 < len(response.body) < SHORT
    assert closed, "the rest of the body is not read: the connection cannot serve another request"
    assert (response.get("connection") or b"").lower() == b"close", response


@pytest.mark.timeout(20)
def test_a_502_or_504_keeps_the_client_connection_for_its_next_request(env):
    """Our 502 and 504 to a request read whole say keep-alive, and the same connection serves
    the next request, as nginx's and Apache's do: while a backend is down, its clients do not
    reconnect (a TLS client: a handshake) for every request."""
    def script(conn: RawConn) -> None:      # (the backend sees the target past the route's prefix)
        head = conn.read_head()
        if head.target == "/silent":
            conn.wait_eof(8)
        else:       # and closes: no connection of this test's waits in the pool for the next test
            conn.send(respond(200, b"fine", headers=[("Connection", "close")]))
    _script(env, script)
    with env.proxy.connect() as sock:
        reader = Reader(sock, 5)
        statuses = []
        for target in (b"/refused/a", b"/hang/silent", b"/bad/c", b"/refused/d", b"/bad/e"):
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
            response = reader.response()
            statuses.append(response.status)
            assert (response.get("connection") or b"").lower() != b"close", (target, response)
    assert statuses == [502, 504, 200, 502, 200]


INVALID_RESPONSES = [
    ("garbage", b"this is not http at all\r\n\r\n"),
    ("status-too-long", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
    ("status-not-a-number", b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"),
    ("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("cl-duplicate-different", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("cl-negative", b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"),
    ("nul-in-header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    ("head-too-large", b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n"),
    ("101-to-a-plain-request", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    ("closed-without-a-byte", b""),
]


@pytest.mark.timeout(15)
@pytest.mark.parametrize("answer", [a for _, a in INVALID_RESPONSES], ids=[i for i, _ in INVALID_RESPONSES])
def test_invalid_response_is_502(env, answer):
    """Each invalid backend answer is a 502.  `head-too-large` guards against a head over
    MAX_RESPONSE_HEAD being relayed when it arrived whole in one read (the limit was only
    checked while the head was incomplete)."""
    def bad(conn: RawConn) -> None:
        conn.read_head()
        if answer:
            conn.send(answer)
        time.sleep(0.3)
    _script(env, bad)
    before = _log_count(env, "/bad/", env.e.url)
    response, _, closed = _exchange(env, b"GET /bad/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 502, response
    assert 0 < len(response.body) < SHORT
    _assert_logged(env, "/bad/", env.e.url, before)


@pytest.mark.timeout(15)
def test_backend_read_timeout_is_504_after_timeouts_proxy(env):
    def silent(conn: RawConn) -> None:
        conn.read_head()
        conn.wait_eof(8)
    _script(env, silent)
    before = _log_count(env, "/hang/", env.e.url)
    response, elapsed, _ = _exchange(env, b"GET /hang/x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 504
    assert 0 < len(response.body) < SHORT
    assert 0.9 <= elapsed < 3.0, f"answered after {elapsed:.2f}s with timeouts.proxy = 1"
    _assert_logged(env, "/hang/", env.e.url, before)
    assert env.e.conns[0].eof.wait(2), "the timed-out backend connection was not closed"


@pytest.mark.timeout(15)
def test_proxy_timeout_is_between_reads_not_for_the_whole_response(env):
    """ProxyTimeout bounds each wait for the backend, not the exchange: a response that
    trickles in over 2 s with timeouts.proxy = 1 arrives whole."""
    def trickle(conn: RawConn) -> None:
        conn.read_head()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
        for byte in b"slow!":
            time.sleep(0.4)
            conn.send(bytes([byte]))
    _script(env, trickle)
    response, elapsed, _ = _exchange(env, b"GET /hang/trickle HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 200 and response.body == b"slow!"
    assert elapsed >= 1.5


# == after the response started: close ==================================================================
@pytest.mark.timeout(15)
@pytest.mark.parametrize("how", ["reset", "fin"])
def test_backend_failing_mid_response_closes_the_client_connection(env, how):
    def cut(conn: RawConn) -> None:
        conn.read_head()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"p" * 1000)
        time.sleep(0.2)
        if how == "reset":
            conn.reset()
    _script(env, cut)
    with env.proxy.connect() as sock:
        sock.sendall(b"GET /cut/x HTTP/1.1\r\nHost: t\r\n\r\n")
        data, closed = recv_until_close(sock, 4)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"p" * 1000, "bytes were added to a cut response"
    assert b"502" not in head
    assert closed, "the client connection stayed open after the backend cut the response"
    _assert_logged(env, "/cut/", env.e.url)


@pytest.mark.timeout(15)
def test_bad_chunked_response_body_after_the_head_was_relayed_closes_the_client_connection(env):
    def bad_chunks(conn: RawConn) -> None:
        conn.read_head()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.3)                      # the head is at the client by now
        conn.send(b"zz\r\nmore\r\n0\r\n\r\n")
        conn.wait_eof(3)
    _script(env, bad_chunks)
    with env.proxy.connect() as sock:
        sock.sendall(b"GET /cut/chunks HTTP/1.1\r\nHost: t\r\n\r\n")
        data, closed = recv_until_close(sock, 4)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert closed, "the client connection stayed open after an invalid response body"
    assert b"zz" not in data and not data.endswith(b"0\r\n\r\n"), "the bad framing was passed on"
    assert env.e.conns[0].eof.wait(2)


@pytest.mark.timeout(15)
def test_bad_chunked_response_body_arriving_with_the_head_is_502(env):
    """Head and bad body in one read: nothing has gone to the client yet, so it can still
    be told the truth (502) instead of getting an empty close.  Guards against the
    response being marked as started before its head was sent, which turned the 502
    into a bare close."""
    def bad_chunks(conn: RawConn) -> None:
        conn.read_head()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n")
        time.sleep(0.3)
    _script(env, bad_chunks)
    with env.proxy.connect() as sock:
        sock.sendall(b"GET /bad/chunks HTTP/1.1\r\nHost: t\r\n\r\n")
        response = Reader(sock, 4).response()
        _, closed = recv_until_close(sock, 0.5)
    assert response.status == 502, response
    assert 0 < len(response.body) < SHORT
    assert not closed, "nothing of the response went: the client's connection serves on"


# == clients that go away ================================================================================
@pytest.mark.timeout(15)
def test_client_gone_mid_request_body_closes_the_backend_connection(env):
    def hold(conn: RawConn) -> None:
        conn.read_head()
        conn.wait_eof(8)
    _script(env, hold)
    with env.proxy.connect() as sock:
        sock.sendall(b"POST /abort/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 5000)
        wait_for(lambda: env.e.requests, 5, what="the request head at the backend")
    started = time.monotonic()
    assert env.e.conns[0].eof.wait(3), "the backend connection of an abandoned upload stayed open"
    assert time.monotonic() - started < 3


@pytest.mark.timeout(15)
def test_client_gone_mid_response_closes_the_backend_connection(env):
    gone = threading.Event()

    def stream(conn: RawConn) -> None:
        conn.read_head()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        deadline = time.monotonic() + 8
        try:
            while time.monotonic() < deadline:
                conn.sock.sendall(b"s" * 16384)
                time.sleep(0.01)
        except OSError:
            gone.set()
    _script(env, stream)
    sock = env.proxy.connect()
    sock.sendall(b"GET /abort/stream HTTP/1.1\r\nHost: t\r\n\r\n")
    got = 0
    while got < 50_000:
        got += len(sock.recv(65536))
    sock.close()
    assert gone.wait(4), "the backend kept streaming to a client that had gone away"


@pytest.mark.timeout(15)
def test_client_reset_while_waiting_for_the_response_closes_the_backend_connection(env):
    """The client resets (RST) while the backend is still working on the answer: the client
    is certainly gone, so its backend connection is closed at once rather than left to
    finish (and then pooled)."""
    def slow(conn: RawConn) -> None:
        conn.read_head()
        if conn.wait_eof(5):
            return
        conn.send(respond(200, b"late"))
        conn.wait_eof(5)
    _script(env, slow)
    sock = env.proxy.connect()
    sock.sendall(b"GET /abort/slow HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_for(lambda: env.e.requests, 5, what="the request at the backend")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert env.e.conns[0].eof.wait(3), "the backend connection of a reset client was kept"


@pytest.mark.timeout(15)
def test_proxy_still_serves_after_all_that(env):
    def ok(conn: RawConn) -> None:
        conn.read_head()
        conn.send(respond(200, b"fine", [("Connection", "close")]))
    _script(env, ok)
    response, _, _ = _exchange(env, b"GET /cut/fine HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 200 and response.body == b"fine"
