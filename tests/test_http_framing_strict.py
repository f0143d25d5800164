"""Stricter framing where peers are strict (issue #15, part 5).

- Transfer-Encoding with codings before chunked: 501 (as nginx), nothing reaches a backend.
- Spellings that mean plain chunked: forwarded as `Transfer-Encoding: chunked`; a
  Content-Length spelled otherwise than its number, as that number.
- An absolute-form target's authority wins over Host (RFC 9112 §3.2.2): it is the Host the
  backend sees, on a preserve_host route too, and the one routing conditions match."""

from __future__ import annotations

import pytest
from httpclient import Reader, read_raw_response
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


@pytest.mark.parametrize("coding", [b",chunked", b"chunked ", b"Chunked", b"CHUNKED", b", chunked", b" ,  chunked",
                                    # leading whitespace other than one space (review 2026-12-04-differential #3)
                                    b"\tchunked", b" \tchunked", b"  chunked"])
def test_spellings_of_chunked_are_sent_as_chunked(proxy, backend, coding):
    answer = _send(proxy, b"POST /odd HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n")
    assert answer.status == 200
    head = backend.requests[-1]
    assert head.target == "/odd"
    lines = head.raw.split(b"\r\n")
    assert [line for line in lines if line.lower().startswith(b"transfer-encoding")] == [b"Transfer-Encoding: chunked"]


def _framing_lines(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.lower().startswith((b"transfer-encoding", b"content-length"))]


@pytest.mark.parametrize("length", [b"005", b"\t5\t", b"5 ", b"  5", b"\t5", b"05 "])
def test_spellings_of_a_content_length_are_sent_as_its_number(proxy, backend, length):
    """A backend that trims only spaces, or reads "005" as octal, would frame the body
    otherwise; the next request on the connection shows ours ended where the client's did."""
    with proxy.connect() as sock:
        sock.sendall(b"POST /cl HTTP/1.1\r\nHost: t\r\nContent-Length:" + length + b"\r\n\r\nhello"
                     b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(sock)       # one reader: both responses may come in one segment
        assert [reader.response().status, reader.response().status] == [200, 200]
    heads = backend.requests[-2:]
    assert [h.target for h in heads] == ["/cl", "/after"]
    assert _framing_lines(heads[0].raw) == [b"Content-Length: 5"]


@pytest.mark.parametrize("line", [b"Content-Length: 5", b"content-length: 5", b"transfer-encoding: chunked",
                                  b"Transfer-Encoding: chunked"])
def test_framing_fields_spelled_plainly_go_as_they_came(proxy, backend, line):
    body = b"5\r\nhello\r\n0\r\n\r\n" if b"chunked" in line else b"hello"
    answer = _send(proxy, b"POST /plain HTTP/1.1\r\nHost: t\r\n" + line + b"\r\nX-After: 1\r\n\r\n" + body)
    assert answer.status == 200
    raw = backend.requests[-1].raw
    assert _framing_lines(raw) == [line]
    assert line + b"\r\nX-After: 1\r\n" in raw        # in its place: the head is copied, not rebuilt


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
