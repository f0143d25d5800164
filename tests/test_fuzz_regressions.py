"""What the fuzz campaign found (tests/fuzz_campaign.py), each kept as the minimal example
Hypothesis shrank it to, run through the same invariants (tests/fuzz_http.py), plus a plain
statement of what was wrong."""

from __future__ import annotations

import pytest
from fuzz_http import FuzzBackend, check
from proxyproc import running_proxy
from rawsock import recv_until_close, status_of

FOUND = [
    # A HEAD answered by the proxy itself (here a 400) carried the error page as a body: a
    # client reading the next response would take that body for it.
    ("head-error-with-body", b"HEAD * HTTP/1.1\r\nHost: t\r\nX-Fuzz-Id: 0000000000\r\n\r\n"),
    # CONNECT with an origin-form target was forwarded (only absolute and authority forms were
    # refused): a backend that takes CONNECT for a tunnel would no longer be speaking HTTP with us.
    ("connect-origin-form", b"CONNECT / HTTP/1.1\r\nHost: t\r\nX-Fuzz-Id: 0000000000\r\n\r\n"),
    # A chunked body's trailer section took any line with a colon, so a request line with an
    # absolute-form target ("http:") passed as a trailer and went to the backend inside the first
    # request; a peer that ends the body at "0\r\n" reads a second request there (smuggling).
    # h11 refused it.  Trailers are field lines now, chunk extensions follow their grammar.
    ("request-line-as-trailer", b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                b"X-Fuzz-Id: 0000000000\r\n\r\n0\r\nGET http://good.example/ HTTP/1.1\r\n"
                                b"Host: t\r\nX-Fuzz-Id: 0000000001\r\n\r\n"),
    # A trailer section carrying Content-Length (here empty) was forwarded: a recipient that
    # merges trailers into the head would take a body length from after the body.  Framing,
    # routing and connection fields are refused in trailers now (400); h11 refused it.
    ("content-length-in-trailers", b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                   b"X-Fuzz-Id: 0000000000\r\n\r\n0\r\nContent-Length: \r\n\r\n"),
    # An upgrade request with a Transfer-Encoding that does not end in chunked ("0") was
    # forwarded with it: llhttp leaves an upgrade's framing to us, and our check of the field
    # ran only when it ended in chunked.  A backend may read a body there; h11 refused it.  501.
    ("upgrade-with-other-transfer-encoding",
     b"GET / HTTP/1.1\r\nTransfer-Encoding: 0\r\nTransfer-Encoding: 0\r\n0: 0\r\nHost: t\r\n"
     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
     b"X-Fuzz-Id: 0000000000\r\n\r\n"),
]


# Found by the 20-minute campaign, and it killed the worker: a head that began with an empty
# line (which llhttp skips) and arrived with its CR and LF in different reads was never checked
# for a three-part request line (HeadReader thought it had seen the line end already), and
# splitting it raised ValueError in the loop.
CUT = [("leading-crlf-cut-after-cr", b"\r\nGET / HTTP/1.1\r\nHost: t\r\nX-Fuzz-Id: 0000000000\r\n\r\n", [1])]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    backend = FuzzBackend()
    with running_proxy(tmp_path_factory.mktemp("fuzz-found"),
                       [{"path": "/", "to": backend.url + "/", "preserve_host": True}], workers=1,
                       timeouts={"client_header": 2, "keepalive": 2, "proxy": 5}) as proxy:
        yield proxy, backend
    backend.close()


@pytest.mark.parametrize("name, stream", FOUND, ids=[name for name, _ in FOUND])
def test_found_by_fuzzing(target, name, stream):
    proxy, backend = target
    check(proxy.port, backend, stream, [])


@pytest.mark.parametrize("name, stream, cuts", CUT, ids=[name for name, _, _ in CUT])
def test_found_by_fuzzing_in_pieces(target, name, stream, cuts):
    proxy, backend = target
    pids = proxy.worker_pids()
    check(proxy.port, backend, stream, cuts)
    assert proxy.worker_pids() == pids, "the worker died"


@pytest.mark.parametrize("body", [b"0\r\nGET http://t/ HTTP/1.1\r\n\r\n", b"0\r\nX T: 1\r\n\r\n",
                                  b"5;a b\r\nhello\r\n0\r\n\r\n", b"5;\x01\r\nhello\r\n0\r\n\r\n"])
def test_bad_trailers_and_chunk_extensions_get_400(target, body):
    proxy, backend = target
    before = len(backend.complete)
    with proxy.connect() as sock:
        sock.sendall(b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        data, _ = recv_until_close(sock)
    assert status_of(data) == 400, data[:100]
    assert len(backend.complete) == before


def test_our_answer_to_head_has_no_body(target):
    proxy, _ = target
    with proxy.connect() as sock:
        sock.sendall(b"HEAD /a/../b HTTP/1.1\r\nHost: t\r\n\r\n")
        data, closed = recv_until_close(sock)
    assert status_of(data) == 400 and closed
    assert data.endswith(b"\r\n\r\n") and b"Content-Length: " in data


def test_connect_is_refused_whatever_its_target(target):
    proxy, backend = target
    before = len(backend.complete)
    for request_target in (b"/", b"t:443", b"http://t/"):
        with proxy.connect() as sock:
            sock.sendall(b"CONNECT " + request_target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            data, _ = recv_until_close(sock)
        assert status_of(data) == 405, (request_target, data[:80])
    assert len(backend.complete) == before
