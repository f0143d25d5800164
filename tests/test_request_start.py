"""Where a request starts: the empty lines before its request line (review 2026-12-03-http1
#6) and the client_header budget that runs until its head is complete (#9).  A real proxy
with one worker and a raw backend that answers each request with its target and body."""

from __future__ import annotations

import socket
import time

import pytest
from httpclient import Reader
from proxyproc import Proxy
from rawbackend import RawBackend, respond, serve_simple
from rawsock import recv_until_close
from support import free_port

HEADER_BUDGET = 1.0       # timeouts.client_header; deadlines are swept every 0.25 s


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """client_header 1 s; a plain listener (the proxy's port) and a PROXY protocol one."""
    backend = RawBackend(lambda conn: serve_simple(
        conn, lambda head, body: respond(200, b"r:" + head.target.encode() + b":" + body)))
    proxy = Proxy(tmp_path_factory.mktemp("start"), [{"path": "/", "to": backend.url + "/"}], workers=1,
                  timeouts={"client_header": HEADER_BUDGET})
    proxy.proxy_port = free_port()
    proxy.config["listen"] = [f"127.0.0.1:{proxy.port}",
                              {"address": f"127.0.0.1:{proxy.proxy_port}", "proxy_protocol": True}]
    yield proxy.start()
    proxy.stop()
    backend.close()


def _get(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path


def _bodies(sock, count: int) -> list:
    reader = Reader(sock, timeout=3)
    return [(r.status, r.body) for r in (reader.response() for _ in range(count))]


# == #6: empty lines before a request line (RFC 9112 §2.2) ======================================
@pytest.mark.timeout(20)
@pytest.mark.parametrize("before", [b"\r\n", b"\r\n" * 10])
def test_empty_lines_before_the_first_request_are_ignored(proxy, before):
    with proxy.connect() as sock:
        sock.sendall(before + _get(b"/one"))
        assert _bodies(sock, 1) == [(200, b"r:/one:")]


@pytest.mark.timeout(20)
def test_a_crlf_after_a_post_body_does_not_lose_the_request_behind_it(proxy):
    """What old clients send (Apache: "browsers have to tack a CRLF on to the end of POSTs"):
    pipelined, then on a keep-alive connection, then cut between its CR and its LF."""
    post = b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\r\n"
    with proxy.connect() as sock:
        sock.sendall(post + _get(b"/next"))
        assert _bodies(sock, 2) == [(200, b"r:/form:abc"), (200, b"r:/next:")]
        sock.sendall(post)
        assert _bodies(sock, 1) == [(200, b"r:/form:abc")]
        time.sleep(0.1)
        sock.sendall(b"\r")
        time.sleep(0.1)
        sock.sendall(b"\n" + _get(b"/later"))
        assert _bodies(sock, 1) == [(200, b"r:/later:")]


@pytest.mark.timeout(20)
def test_more_empty_lines_than_apache_skips_get_400(proxy):
    with proxy.connect() as sock:
        sock.sendall(b"\r\n" * 11 + _get(b"/one"))
        data, closed = recv_until_close(sock, 3)
    assert data.startswith(b"HTTP/1.1 400 ") and closed


# == #9: one client_header budget from the accept to the complete head =====================
def _trickle(sock, start: float, first_at: float) -> tuple[float, bytes]:
    """From `first_at` s after `start`, a head that never ends, a byte per 0.1 s: when (since
    `start`) the proxy answered, and what."""
    time.sleep(max(start + first_at - time.monotonic(), 0))
    sock.settimeout(0.1)
    for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 100:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            pass
        try:
            data = sock.recv(100)
        except TimeoutError:
            continue
        return time.monotonic() - start, data
    return time.monotonic() - start, b"(no answer)"


@pytest.mark.timeout(20)
def test_the_first_byte_does_not_restart_the_head_budget(proxy):
    with proxy.connect() as sock:
        elapsed, data = _trickle(sock, time.monotonic(), 0.9)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed < HEADER_BUDGET + 0.6, f"408 after {elapsed:.2f} s: the budget restarted at the first byte"


@pytest.mark.timeout(20)
def test_a_proxy_header_and_the_head_share_one_budget(proxy):
    with socket.create_connection(("127.0.0.1", proxy.proxy_port), timeout=5) as sock:
        start = time.monotonic()
        time.sleep(0.5)
        sock.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 4000 80\r\n")
        elapsed, data = _trickle(sock, start, 0.9)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed < HEADER_BUDGET + 0.6, f"408 after {elapsed:.2f} s: the head got a budget of its own"


@pytest.mark.timeout(20)
def test_a_keep_alive_request_gets_a_new_budget_from_its_first_byte(proxy):
    with proxy.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _bodies(sock, 1)[0][0] == 200
        elapsed, data = _trickle(sock, time.monotonic(), 0.9)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert elapsed > 0.9 + HEADER_BUDGET - 0.1, f"408 {elapsed:.2f} s after the response"


@pytest.mark.timeout(20)
def test_a_connection_that_sent_no_request_is_closed_quietly(proxy):
    """Nothing, or only empty lines: closed at its head deadline without a 408, as an idle one."""
    with proxy.connect() as silent, proxy.connect() as blank:
        blank.sendall(b"\r\n")
        start = time.monotonic()
        assert recv_until_close(silent, 3) == (b"", True)
        assert recv_until_close(blank, 3) == (b"", True)
    assert time.monotonic() - start < HEADER_BUDGET + 0.6
