"""Methods outside llhttp's table (review 2026-12-04-differential #4).

Apache, nginx and HAProxy forward a method they do not know: WebDAV's versioning methods
(RFC 3253's VERSION-CONTROL, CHECKIN, BASELINE-CONTROL), RFC 4437's MKREDIRECTREF, an API's
private ones.  mpm answered them 501 because llhttp, which judges every head, knows a fixed
list.  Now a method of nginx's shape (upper-case letters, "-", "_") reaches the backend as it
came, with its body framed as any other; another token ("get") stays 501, as Apache answers a
method it does not know, and a method that is no token a bad request line (400)."""

from __future__ import annotations

import time

import pytest
from h2client import H2Client
from httpclient import Reader
from proxyproc import Proxy, running_proxy
from rawbackend import RawBackend, respond
from rawsock import recv_until_close, status_of

METHODS = [b"VERSION-CONTROL", b"CHECKIN", b"UNCHECKOUT", b"MKWORKSPACE", b"BASELINE-CONTROL", b"ORDERPATCH",
           b"MKREDIRECTREF", b"FOO", b"PURGE_ALL",
           b"PLAY", b"GET_PARAMETER", b"DESCRIBE"]      # RTSP names llhttp refused in HTTP (review 2026-12-04-evening #4)


def _echo(conn) -> None:
    """Answers each request with its method, target and body."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        body = conn.read_body(head)
        conn.send(respond(200, head.method.encode() + b" " + head.target.encode() + b" " + body))


@pytest.fixture(scope="module")
def backend():
    b = RawBackend(_echo)
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    with running_proxy(tmp_path_factory.mktemp("methods"), [{"path": "/", "to": backend.url + "/"}], workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def h2c_proxy(tmp_path_factory, backend):
    p = Proxy(tmp_path_factory.mktemp("methods-h2c"), [{"path": "/", "to": backend.url + "/"}], workers=1)
    p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.parametrize("method", METHODS)
def test_an_extension_method_reaches_the_backend_with_its_body(proxy, backend, method):
    with proxy.connect() as sock:
        sock.sendall(method + b" /dav/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(sock)
        first, second = reader.response(), reader.response()
    assert (first.status, first.body) == (200, method + b" /dav/x hello")
    assert (second.status, second.body) == (200, b"GET /next ")   # the body ended where the client's did


def test_an_extension_method_sent_a_byte_at_a_time_is_forwarded(proxy, backend):
    """A head that comes in parts is judged as it comes: the method only once it is whole."""
    with proxy.connect() as sock:
        for byte in b"VERSION-CONTROL /slow HTTP/1.1\r\nHost: t\r\n\r\n":
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        answer = Reader(sock).response()
    assert (answer.status, answer.body) == (200, b"VERSION-CONTROL /slow ")


def test_a_chunked_body_of_an_extension_method_is_relayed(proxy, backend):
    with proxy.connect() as sock:
        sock.sendall(b"CHECKIN /v HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        answer = Reader(sock).response()
    assert (answer.status, answer.body) == (200, b"CHECKIN /v abcde")


@pytest.mark.parametrize("line, status", [
    (b"get / HTTP/1.1", 501),          # a token, but not of the shape every peer forwards
    (b"Version-Control / HTTP/1.1", 501),
    (b"G(T / HTTP/1.1", 400),          # no token
    (b"VERSION CONTROL / HTTP/1.1", 400),
])
def test_other_methods_are_refused_and_reach_no_backend(proxy, backend, line, status):
    before = len(backend.requests)
    with proxy.connect() as sock:
        sock.sendall(line + b"\r\nHost: t\r\n\r\n")
        data, closed = recv_until_close(sock)
    assert status_of(data) == status, data[:100]
    assert closed and len(backend.requests) == before


def test_a_lower_case_method_a_byte_at_a_time_gets_the_same_answer(proxy, backend):
    """As a whole head: 501, not the 400 a partial "ge" would have drawn from llhttp."""
    with proxy.connect() as sock:
        for byte in b"get / HTTP/1.1\r\nHost: t\r\n\r\n":
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        data, _ = recv_until_close(sock)
    assert status_of(data) == 501, data[:100]


def test_garbage_is_still_refused_before_the_line_ends(proxy):
    """Deferring llhttp until the method's space applies to tokens only: a TLS hello sent to
    the plain port is refused at once, without waiting for a CRLF that never comes."""
    with proxy.connect() as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        data, closed = recv_until_close(sock, timeout=3)
    assert status_of(data) == 400 and closed


def test_an_extension_method_over_http2_reaches_the_backend(h2c_proxy, backend):
    client = H2Client(h2c_proxy.port)
    try:
        stream = client.response(client.request("MKREDIRECTREF", "/h2", body=b"xyz", scheme="http"))
    finally:
        client.close()
    assert (stream.status, bytes(stream.body)) == (200, b"MKREDIRECTREF /h2 xyz")
