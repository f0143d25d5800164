"""Stricter framing where peers are strict (issue #15, part 5).

- Transfer-Encoding with codings before chunked: 501 (as nginx), nothing reaches a backend.
- Spellings that mean plain chunked: forwarded as `Transfer-Encoding: chunked`.
- An absolute-form target's authority wins over Host (RFC 9112 §3.2.2): it is the Host the
  backend sees, on a preserve_host route too, and the one routing conditions match."""

from __future__ import annotations

import pytest
from httpclient import read_raw_response
from proxyproc import running_proxy
from rawbackend import RawBackend
from rawsock import recv_until_close, status_of


@pytest.fixture(scope="module")
def backend():
    b = RawBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    routes = [
        {"path": "/", "when": {"header": {"Host": "^evil(:[0-9]+)?$"}}, "to": backend.url + "/by-host/",
         "preserve_host": True},
        {"path": "/", "to": backend.url + "/", "preserve_host": True},
    ]
    with running_proxy(tmp_path_factory.mktemp("framing"), routes, workers=1) as p:
        yield p


def _send(proxy, data: bytes):
    with proxy.connect() as sock:
        sock.sendall(data)
        return read_raw_response(sock)


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"identity, chunked", b"deflate,chunked",
                                    b"x-custom, chunked"])
def test_codings_before_chunked_get_501_and_reach_no_backend(proxy, backend, coding):
    before = len(backend.requests)
    with proxy.connect() as sock:
        sock.sendall(b"POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")
        data, closed = recv_until_close(sock)
    assert status_of(data) == 501, data[:100]
    assert closed
    assert len(backend.requests) == before


@pytest.mark.parametrize("coding", [b",chunked", b"chunked ", b"Chunked", b"CHUNKED", b", chunked", b" ,  chunked"])
def test_spellings_of_chunked_are_sent_as_chunked(proxy, backend, coding):
    answer = _send(proxy, b"POST /odd HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n")
    assert answer.status == 200
    head = backend.requests[-1]
    assert head.target == "/odd"
    lines = head.raw.split(b"\r\n")
    assert [line for line in lines if line.lower().startswith(b"transfer-encoding")] == [b"Transfer-Encoding: chunked"]


def test_absolute_form_authority_is_the_host_the_backend_sees(proxy, backend):
    answer = _send(proxy, b"GET http://good.example/x?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n")
    assert answer.status == 200
    head = backend.requests[-1]
    assert head.target == "/x?q=1"
    assert head.get("host") == "good.example" and head.get("x-forwarded-host") == "good.example"
    assert [line for line in head.raw.split(b"\r\n") if line.lower().startswith(b"host:")] == [b"Host: good.example"]


def test_absolute_form_authority_is_what_routing_conditions_see(proxy, backend):
    answer = _send(proxy, b"GET http://evil/x HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n")
    assert answer.status == 200
    assert backend.requests[-1].target == "/by-host/x"
    assert backend.requests[-1].get("host") == "evil"
    # HTTP/1.0 without Host, and no path at all: the authority still names the host.
    answer = _send(proxy, b"GET http://evil:8080?a=b HTTP/1.0\r\n\r\n")
    assert answer.status == 200
    assert backend.requests[-1].target == "/by-host/?a=b" and backend.requests[-1].get("host") == "evil:8080"


@pytest.mark.parametrize("target", [b"http://user@good/x", b"http:///x", b"http://bad host/", b"https://a b/"])
def test_bad_authorities_get_400(proxy, backend, target):
    before = len(backend.requests)
    with proxy.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: good\r\n\r\n")
        data, _ = recv_until_close(sock)
    assert status_of(data) == 400, data[:100]
    assert len(backend.requests) == before
