"""What an operator sees of tunnels (issue #4): one access-log line per tunnel with
status 101 and its byte counts, and `mpmctl status --json` counting open tunnels."""

from __future__ import annotations

import json
import re
import socket

import pytest
from proxyproc import tunnel_lines
from rawbackend import RawBackend, RawConn, echo
from rawsock import read_head, recv_exact, status_of
from support import wait_for
from wsutil import switch_response, upgrade_request

GREETING = b"hello from the backend, 37 bytes long"
COMBINED = re.compile(
    r'^(?P<ip>\S+) - - \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<sent>\d+|-) "[^"]*" "[^"]*" '
    r'(?P<micros>\d+) "(?P<route>[^"]*)" "(?P<backend>[^"]*)" (?P<mark>[X-]) '
    r'tunnel_in=(?P<tin>\d+) tunnel_out=(?P<tout>\d+) end="(?P<end>[^"]*)"$')


def _greet_and_echo(conn: RawConn) -> None:
    request = conn.read_head()
    sock, head = conn.sock, request.raw
    sock.sendall(switch_response("websocket", head))
    sock.sendall(GREETING)
    echo(conn)


@pytest.fixture
def raw_echo():
    backend = RawBackend(_greet_and_echo, timeout=20)
    yield backend
    backend.close()


def _tunnel(proxy, path: str, early: bytes, later: bytes, heads: dict | None = None) -> int:
    """Open a tunnel, send `early` with the head and `later` after the 101, read the
    echoes, end it with a half-close; returns how many bytes the client received (and puts
    the size of the 101 head in `heads[path]`)."""
    with proxy.connect() as sock:
        sock.sendall(upgrade_request(path) + early)
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        if heads is not None:
            heads[path] = len(head)
        assert recv_exact(sock, len(GREETING), buf) == GREETING
        sock.sendall(later)
        assert recv_exact(sock, len(early) + len(later), buf) == early + later
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""
        return len(head) + len(GREETING) + len(early) + len(later)


def test_access_log_has_one_line_per_tunnel_with_101_and_byte_counts(proxy_factory, raw_echo):
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/"}])
    sizes = {"a": (b"", b"x" * 10), "b": (b"early" * 7, b"later" * 1000), "c": (b"\x00" * 3, b"")}
    heads: dict = {}
    received = {key: _tunnel(proxy, f"/ws/acct-{key}?q=1", early, later, heads)
                for key, (early, later) in sizes.items()}
    for key, (early, later) in sizes.items():
        marker = f"/ws/acct-{key}?q=1"
        lines = wait_for(lambda m=marker: tunnel_lines(proxy, m), 5, what=f"the access-log line for {marker}")
        assert len(lines) == 1, lines
        m = COMBINED.match(lines[0])
        assert m, f"not a combined line with tunnel fields: {lines[0]!r}"
        assert m["request"] == f"GET {marker} HTTP/1.1"
        assert m["status"] == "101"
        assert m["ip"] == "127.0.0.1"
        assert m["route"] == "/ws/"
        assert int(m["tin"]) == len(early) + len(later)           # client -> backend, after the head
        assert int(m["tout"]) == received[key]                     # backend -> client, 101 head included
        # %b as on every other line: what followed the head (nginx's $body_bytes_sent); %X
        # "-": a tunnel both sides closed (review 2026-12-04-logs #7: %b had the 101 head, no %X).
        assert int(m["sent"]) == received[key] - heads[marker]
        assert m["mark"] == "-"
        assert m["end"] == "closed"


def test_a_tunnel_that_ends_otherwise_than_closed_is_marked_X(proxy_factory, raw_echo):
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/", "timeout": 1}])
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/ws/idle-end"))
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        assert recv_exact(sock, len(GREETING), buf) == GREETING
        sock.settimeout(5)
        assert sock.recv(1) == b""                                  # the idle timeout closed it
    lines = wait_for(lambda: tunnel_lines(proxy, "/ws/idle-end"), 5, what="the tunnel's line")
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    assert (m["mark"], m["end"], m["sent"]) == ("X", "idle timeout", str(len(GREETING)))


def test_json_access_log_has_the_tunnel_fields(proxy_factory, raw_echo):
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/"}], log={"format": "json"})
    received = _tunnel(proxy, "/ws/json-acct", b"12345", b"678")
    line = wait_for(lambda: tunnel_lines(proxy, "/ws/json-acct"), 5, what="the access-log line")
    assert len(line) == 1, line
    record = json.loads(line[0])
    assert record["status"] == 101
    assert record["request"] == "GET /ws/json-acct HTTP/1.1"
    assert record["tunnel"] is True
    assert record["tunnel_bytes_in"] == 8
    assert record["tunnel_bytes_out"] == received
    assert record["tunnel_end"] == "closed"


def test_tunnel_log_line_counts_both_heads_like_any_request(proxy_factory, raw_echo, http_backend):
    """bytes_received/bytes_sent of a tunnel's line count the heads as every other line
    does (Apache's %I/%O): the request head in, the 101 head out.  Guards against a tunnel's
    bytes_received leaving out the request head while bytes_sent counted the 101."""
    plain = http_backend()
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/"},
                           {"path": "/plain/", "to": plain.url + "/plain/"}], log={"format": "json"})
    request = b"GET /plain/ref HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
    with proxy.connect() as sock:
        sock.sendall(request)
        read_head(sock)
    line = wait_for(lambda: tunnel_lines(proxy, "/plain/ref"), 5, what="the plain request's line")
    assert json.loads(line[0])["bytes_received"] == len(request)      # how an ordinary line counts
    received = _tunnel(proxy, "/ws/heads", b"12345", b"678")
    line = wait_for(lambda: tunnel_lines(proxy, "/ws/heads"), 5, what="the tunnel's line")
    record = json.loads(line[0])
    assert record["bytes_sent"] == received
    assert record["bytes_received"] == len(upgrade_request("/ws/heads", key="x" * 24)) + 8, record


def test_tunnel_bytes_reach_the_scoreboard(proxy_factory, raw_echo):
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/"}], workers=1)
    before = proxy.status()["totals"]
    received = _tunnel(proxy, "/ws/bytes", b"", b"b" * 1_000_000)

    def counted():
        totals = proxy.status()["totals"]
        return totals if totals["bytes_in"] - before["bytes_in"] >= 1_000_000 \
            and totals["bytes_out"] - before["bytes_out"] >= received else None
    wait_for(counted, 5, 0.1, "bytes_in/bytes_out to include the tunnel's bytes")


def test_tunnels_count_against_threads_per_child(proxy_factory, raw_echo):
    """ThreadsPerChild 3 on one worker: a 4th connection waits until a tunnel closes."""
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/"}], workers=1,
                          mpm={"threads_per_child": 3, "max_request_workers": 3})
    open_ = []
    try:
        for i in range(3):
            sock = proxy.connect()
            open_.append(sock)
            sock.sendall(upgrade_request(f"/ws/cap-{i}"))
            head, _ = read_head(sock)
            assert status_of(head) == 101
        waiting = proxy.connect()
        open_.append(waiting)
        waiting.sendall(upgrade_request("/ws/cap-waiting"))
        waiting.settimeout(0.8)
        with pytest.raises(TimeoutError):
            waiting.recv(1)                    # not accepted (or not served) while at capacity
        open_.pop(0).close()                   # one tunnel ends: room for the waiting one
        waiting.settimeout(5)
        head, _ = read_head(waiting)
        assert status_of(head) == 101, head
    finally:
        for sock in open_:
            sock.close()


def test_status_counts_open_tunnels_and_zero_after_they_close(proxy_factory, raw_echo):
    proxy = proxy_factory([{"path": "/ws/", "to": raw_echo.ws_url + "/ws/"}])
    assert proxy.status()["totals"]["tunnels"] == 0
    sockets = []
    try:
        for i in range(6):
            sock = proxy.connect()
            sockets.append(sock)
            sock.sendall(upgrade_request(f"/ws/status-{i}"))
            head, buf = read_head(sock)
            assert status_of(head) == 101
            assert recv_exact(sock, len(GREETING), buf) == GREETING

        def counts():
            status = proxy.status()
            per_worker = sum(w["tunnels"] for w in status["workers"])
            return status if per_worker == 6 and status["totals"]["tunnels"] == 6 else None
        status = wait_for(counts, 5, 0.1, "status to show 6 open tunnels")
        assert all(w["tunnels"] >= 0 for w in status["workers"])
        assert status["totals"]["connections"] >= 6
    finally:
        for sock in sockets:
            sock.close()

    def drained():
        status = proxy.status()
        return status if status["totals"]["tunnels"] == 0 and status["totals"]["connections"] == 0 else None
    status = wait_for(drained, 5, 0.1, "status to show no tunnels after they closed")
    assert all(w["tunnels"] == 0 for w in status["workers"])
    # The CLI says the same as the fixture's helper.
    out = proxy.mpmctl("status", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["totals"]["tunnels"] == 0
