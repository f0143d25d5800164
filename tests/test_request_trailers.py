"""Forwarding fields in a chunked request's trailer section (review 2026-12-03-http1 #10).

mpm drops a client's X-Forwarded-For/-Proto/-Host from the head and writes its own; the same
fields after the last chunk reached the backend as the client wrote them, for any backend
that merges trailers into the head to take.  Relayed bodies are not rewritten, so such a
trailer is refused (400) as a Host there is; other trailers still go through.  An HTTP/2
client's trailers are re-encoded as chunked trailer lines, so there they are dropped, as in the
head."""

from __future__ import annotations

import pytest
from h2client import H2Client, Stream
from httpclient import read_raw_response
from proxyproc import Proxy
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
    p = Proxy(tmp_path_factory.mktemp("trailers"), [{"path": "/", "to": backend.url + "/"}], workers=1)
    p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]     # HTTP/1.1 and HTTP/2
    p.start()
    yield p
    p.stop()


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


def test_an_http2_clients_forwarding_trailers_are_dropped_and_the_others_kept(proxy, backend):
    client = H2Client(proxy.port)
    try:
        stream_id = client.conn.get_next_available_stream_id()
        client.streams[stream_id] = Stream(stream_id)
        client.conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                                             (":path", "/h2-trailers"), ("te", "trailers")])
        client.conn.send_data(stream_id, b"hello")
        client.conn.send_headers(stream_id, [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"),
                                             ("x-forwarded-host", "admin.internal"), ("forwarded", "for=6.6.6.6"),
                                             ("x-checksum", "abc")], end_stream=True)
        client.flush()
        assert client.response(stream_id).status == 200
    finally:
        client.close()
    raw = [bytes(conn.raw) for conn in backend.conns if b"/h2-trailers" in bytes(conn.raw)][0]
    assert b"5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n" in raw, raw
    assert b"6.6.6.6" not in raw and b"admin.internal" not in raw and b"https" not in raw, raw
