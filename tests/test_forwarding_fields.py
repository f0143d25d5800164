"""What the backend is told about the client (review 2026-12-03-rewrite #1, #4): mpm writes
X-Forwarded-For/-Proto/-Host, so a client's own Forwarded (RFC 7239), which frameworks such as
Spring read before X-Forwarded-*, must not reach the backend beside them.  A peer in
`limits.trusted_proxies` (a balancer that ends TLS) states its client's scheme and host: those go on,
as Apache and HAProxy pass them, and `reverse` builds its Locations with that scheme."""

from __future__ import annotations

import pytest
from httpclient import read_raw_response
from proxyproc import running_proxy
from rawbackend import RawBackend, respond, serve_simple


@pytest.fixture(scope="module")
def backend():
    b = RawBackend()
    # Every answer names a backend URL, for the `reverse` route to rewrite.
    b.handler = lambda conn: serve_simple(conn, lambda head, body: respond(
        200, b"ok", headers=[("Location", f"{b.url}/app/next")]))
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    with running_proxy(tmp_path_factory.mktemp("fwd"), [{"path": "/", "to": backend.url + "/"}], workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def trusting(tmp_path_factory, backend):
    """A proxy whose peer (127.0.0.1) is a trusted proxy."""
    routes = [{"path": "/app/", "to": backend.url + "/app/", "reverse": True}, {"path": "/", "to": backend.url + "/"}]
    with running_proxy(tmp_path_factory.mktemp("trusting"), routes, workers=1,
                       limits={"trusted_proxies": ["127.0.0.0/8"]}) as p:
        yield p


def _seen(proxy, backend, fields: bytes, target: bytes = b"/x", answer: list | None = None):
    """The head the backend received for a GET carrying `fields` (CRLF-terminated lines)."""
    before = len(backend.requests)
    with proxy.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: shop.example\r\n" + fields + b"Connection: close\r\n\r\n")
        response = read_raw_response(sock)
        assert response.status == 200
    if answer is not None:
        answer.append(response)
    assert len(backend.requests) == before + 1
    return backend.requests[-1]


def test_a_clients_forwarded_lines_do_not_reach_the_backend(proxy, backend):
    spoof = (b"Forwarded: for=6.6.6.6;proto=https;host=evil.example\r\nX-Real-IP: 6.6.6.6\r\n"
             b"FORWARDED: for=7.7.7.7\r\nX-Forwarded-Proto: https\r\n")
    head = _seen(proxy, backend, spoof)
    assert [name for name, _ in head.headers if name == "forwarded"] == []
    assert head.get("x-forwarded-proto") == "http" and head.get("x-forwarded-host") == "shop.example"
    assert head.get("x-forwarded-for") == "127.0.0.1" and head.get("x-real-ip") == "6.6.6.6"
    # Also when the client's Connection names it, and in a chunked request (te_odd spelling).
    head = _seen(proxy, backend, b"Connection: Forwarded\r\nForwarded: for=6.6.6.6\r\nAccept: */*\r\n")
    assert head.get("forwarded") is None and head.get("accept") == "*/*"
    with proxy.connect() as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6\r\nTransfer-Encoding: Chunked\r\n"
                     b"Connection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        assert read_raw_response(sock).status == 200
    assert backend.requests[-1].get("forwarded") is None
    # A field whose name only starts with it stays.
    assert _seen(proxy, backend, b"Forwarded-Ext: 1\r\n").get("forwarded-ext") == "1"


def test_a_trusted_proxys_scheme_and_host_go_on(trusting, backend):
    stated = b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example\r\nForwarded: for=203.0.113.5;proto=https\r\n"
    answers: list = []
    head = _seen(trusting, backend, b"X-Forwarded-For: 203.0.113.5\r\n" + stated, b"/app/x", answers)
    assert (head.get("x-forwarded-proto"), head.get("x-forwarded-host"), head.get("forwarded")) == \
        ("https", "www.example", "for=203.0.113.5;proto=https")
    assert head.get("x-forwarded-for") == "203.0.113.5, 127.0.0.1"
    # reverse: the client used https (the balancer says so), so its Location is https too.
    assert answers[0].get("location") == b"https://shop.example/app/next"
    # A trusted peer that states nothing gets ours, as any client does.
    head = _seen(trusting, backend, b"", b"/app/y", answers)
    assert (head.get("x-forwarded-proto"), head.get("x-forwarded-host")) == ("http", "shop.example")
    assert answers[1].get("location") == b"http://shop.example/app/next"


def test_reverse_without_a_host_writes_a_path_absolute_location(trusting, backend):
    """Review 2026-12-03-rewrite #5: an HTTP/1.0 request without Host got the backend's own
    authority with the client's path (a URL that exists nowhere); nginx's proxy_redirect
    default writes the path alone."""
    with trusting.connect() as sock:
        sock.sendall(b"GET /app/z HTTP/1.0\r\n\r\n")
        response = read_raw_response(sock)
    assert (response.status, response.get("location")) == (200, b"/app/next")


def test_x_forwarded_spellings_with_underscores_do_not_reach_the_backend(proxy, backend):
    """CGI, WSGI, PHP and Rack read "_" and "-" in a field name alike: a client's
    X_Forwarded_Proto beside ours reached wsgiref as HTTP_X_FORWARDED_PROTO, and Django took a
    plain-http request for https (review 2026-12-04-differential #2; nginx drops every field
    with "_" by default)."""
    spoof = (b"X_Forwarded_Proto: https\r\nx-forwarded_for: 6.6.6.6\r\nX_FORWARDED-HOST: evil.example\r\n"
             b"X_Forwarded_Port: 443\r\n")
    head = _seen(proxy, backend, spoof)
    names = [name.replace("_", "-") for name, _ in head.headers]
    assert names.count("x-forwarded-proto") == names.count("x-forwarded-for") == names.count("x-forwarded-host") == 1
    assert (head.get("x-forwarded-proto"), head.get("x-forwarded-for"), head.get("x-forwarded-host")) == \
        ("http", "127.0.0.1", "shop.example")
    assert head.get("x_forwarded_port") == "443"                  # not one we write: it stays
    # In a trailer section, where a relayed body cannot be rewritten: refused, as the hyphen spelling is.
    with proxy.connect() as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"2\r\nhi\r\n0\r\nX_Forwarded_Proto: https\r\n\r\n")
        assert read_raw_response(sock).status == 400
