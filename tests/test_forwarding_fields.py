"""What the backend is told about the client (review 2026-12-03-rewrite #1, #4): mpm writes
X-Forwarded-For/-Proto/-Host, so a client's own Forwarded (RFC 7239), which frameworks such as
Spring read before X-Forwarded-*, must not reach the backend beside them."""

from __future__ import annotations

import pytest
from httpclient import read_raw_response
from proxyproc import running_proxy
from rawbackend import RawBackend


@pytest.fixture(scope="module")
def backend():
    b = RawBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    with running_proxy(tmp_path_factory.mktemp("fwd"), [{"path": "/", "to": backend.url + "/"}], workers=1) as p:
        yield p


def _seen(proxy, backend, fields: bytes, version: bytes = b"HTTP/1.1"):
    """The head the backend received for a GET carrying `fields` (CRLF-terminated lines)."""
    before = len(backend.requests)
    with proxy.connect() as sock:
        sock.sendall(b"GET /x " + version + b"\r\nHost: shop.example\r\n" + fields + b"Connection: close\r\n\r\n")
        assert read_raw_response(sock).status == 200
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
