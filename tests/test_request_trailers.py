"""Forwarding fields in a chunked request's trailer section (review 2026-12-03-http1 #10).

mpm drops a client's X-Forwarded-For/-Proto/-Host from the head and writes its own; the same
fields after the last chunk reached the backend as the client wrote them, for any backend
that merges trailers into the head to take.  Relayed bodies are not rewritten, so such a
trailer is refused (400) as a Host there is; other trailers still go through."""

from __future__ import annotations

import pytest
from httpclient import read_raw_response
from proxyproc import running_proxy
from rawbackend import RawBackend
from support import wait_for

HEAD = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n"


@pytest.fixture(scope="module")
def backend():
    b = RawBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    with running_proxy(tmp_path_factory.mktemp("trailers"), [{"path": "/", "to": backend.url + "/"}],
                       workers=1) as p:
        yield p


def test_an_ordinary_trailer_still_reaches_the_backend(proxy, backend):
    with proxy.connect() as sock:
        sock.sendall(HEAD + b"0\r\nX-Checksum: abc123\r\n\r\n")
        assert read_raw_response(sock).status == 200
    assert any(b"0\r\nX-Checksum: abc123\r\n\r\n" in bytes(conn.raw) for conn in backend.conns)


@pytest.mark.parametrize("field", [b"X-Forwarded-For: 6.6.6.6", b"x-forwarded-proto: https",
                                   b"X-Forwarded-Host: admin.internal", b"Forwarded: for=6.6.6.6"])
@pytest.mark.parametrize("split", [False, True], ids=["one-write", "after-the-head-went-on"])
def test_a_forwarding_field_in_a_trailer_is_refused_and_never_sent(proxy, backend, field, split):
    requests = len(backend.requests)
    with proxy.connect() as sock:
        if split:       # the head is at the backend (on a new or a pooled connection) before the trailer comes
            sock.sendall(HEAD)
            wait_for(lambda: len(backend.requests) > requests, 5, 0.02, "the head at the backend")
            sock.sendall(b"0\r\n" + field + b"\r\n\r\n")
        else:
            sock.sendall(HEAD + b"0\r\n" + field + b"\r\n\r\n")
        assert read_raw_response(sock).status == 400
    for conn in backend.conns:
        if any(head in conn.requests for head in backend.requests[requests:]):
            assert conn.wait_eof(5), "the backend connection of a refused request is closed"
        assert field.split(b": ")[1] not in bytes(conn.raw), bytes(conn.raw)
