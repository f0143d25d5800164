"""Where a request starts: the empty lines before its request line (review 2026-12-03-http1
#6) and the client_header budget that runs until its head is complete (#9).  A real proxy
with one worker and a raw backend that answers each request with its target and body."""

from __future__ import annotations

import time

import pytest
from httpclient import Reader
from rawbackend import RawBackend, respond, serve_simple
from rawsock import recv_until_close


@pytest.fixture
def proxy(proxy_factory):
    backend = RawBackend(lambda conn: serve_simple(
        conn, lambda head, body: respond(200, b"r:" + head.target.encode() + b":" + body)))
    yield proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
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
