"""Backends that misbehave (review 2026-12-04-backends): what a client gets, and that the
worker's other clients do not pay for it.

- Interim (1xx) heads without end: relayed up to MAX_INTERIM, then 502, as Apache's
  AP_MAX_INTERIM_RESPONSES.  Unbounded, a backend held the exchange for ever (each read moved
  its deadline) and, to a client not reading, piled the heads up in the worker.
- `Transfer-Encoding: xchunked`: taken for chunked and relayed as it came, so the proxy and the
  client disagreed on where the response ended; now both read it to the close (RFC 9112 §6.3),
  as a `gzip` coding already was.
- A chunked body of 1-byte chunks: one read scanned 256 KiB of size lines in a loop turn (other
  clients waited 198-338 ms); a read now scans at most 16 KiB beyond chunk data.  Checked here
  for what a client receives, relayed and de-chunked (the latency is bench's business).
"""

from __future__ import annotations

import re
import socket
import time

import h2.settings
import pytest
from h2client import H2Client
from proxyproc import wait_access
from rawbackend import RawBackend
from rawsock import recv_until_eof, status_of

MAX_INTERIM = 10        # worker.response.MAX_INTERIM: Apache's AP_MAX_INTERIM_RESPONSES

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
TINY_CHUNKS = 60_000


def _interims_then_ok(count: int):
    def handler(conn) -> None:
        conn.read_head()
        conn.send(EARLY_HINTS * count + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return handler


def _endless_interims(conn) -> None:
    conn.read_head()
    try:
        while True:
            conn.sock.sendall(EARLY_HINTS * 100)
    except OSError:
        pass


def _xchunked(conn) -> None:
    conn.read_head()
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")


def _bad_chunk(conn) -> None:
    conn.read_head()
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Pad: " + b"p" * 300 + b"\r\n\r\nzz\r\nok\r\n")


def _tiny_chunks(conn) -> None:
    conn.read_head()
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * TINY_CHUNKS + b"0\r\n\r\n")


def _answer(proxy, target: bytes, version: bytes = b"1.1") -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        sock.sendall(b"GET " + target + b" HTTP/" + version + b"\r\nHost: t\r\nConnection: close\r\n\r\n")
        return recv_until_eof(sock, limit=20)


@pytest.fixture
def proxy(proxy_factory):
    backends = {name: RawBackend(handler) for name, handler in (
        ("ten", _interims_then_ok(MAX_INTERIM)), ("eleven", _interims_then_ok(MAX_INTERIM + 1)),
        ("endless", _endless_interims), ("xchunked", _xchunked), ("tiny", _tiny_chunks), ("bad", _bad_chunk))}
    try:
        yield proxy_factory([{"path": f"/{name}/", "to": backend.url + "/"} for name, backend in backends.items()],
                            workers=1, timeouts={"proxy": 2})
    finally:
        for backend in backends.values():
            backend.close()


@pytest.mark.timeout(60)
def test_interim_heads_are_relayed_up_to_a_limit_then_502(proxy):
    ten = _answer(proxy, b"/ten/x")
    assert ten.count(b"HTTP/1.1 103 ") == MAX_INTERIM and b"HTTP/1.1 200 OK" in ten and ten.endswith(b"ok"), ten[-200:]
    for target in (b"/eleven/x", b"/endless/x"):
        answer = _answer(proxy, target)
        assert answer.count(b"HTTP/1.1 103 ") == MAX_INTERIM, answer[-300:]
        final = answer.split(b"\r\n\r\n")[MAX_INTERIM]
        assert status_of(final) == 502, answer[-300:]
    assert "more than 10 interim (1xx) responses" in proxy.error_text()


@pytest.mark.timeout(30)
def test_a_coding_that_only_ends_in_chunked_is_read_to_the_close_as_the_client_reads_it(proxy):
    """RFC 9112 §6.3: a last coding other than chunked means the body ends at the close; the
    client, for which "xchunked" is unknown, reads it so, and so does the proxy now."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        sock.sendall(b"GET /xchunked/x HTTP/1.1\r\nHost: t\r\n\r\n")      # keep-alive asked
        head, _, body = recv_until_eof(sock, limit=20).partition(b"\r\n\r\n")
    assert status_of(head) == 200 and b"Transfer-Encoding: xchunked" in head and b"Connection: close" in head, head
    assert body == b"2\r\nok\r\n0\r\n\r\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_a_body_of_one_byte_chunks_arrives_whole(proxy, version):
    answer = _answer(proxy, b"/tiny/x", version)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(head) == 200
    if version == b"1.1":
        assert body == b"1\r\na\r\n" * TINY_CHUNKS + b"0\r\n\r\n"
    else:                                   # de-chunked, ended by the close
        assert body == b"a" * TINY_CHUNKS



@pytest.mark.timeout(30)
def test_a_502_for_a_body_bad_in_the_first_read_is_logged_with_the_bytes_sent(proxy):
    """The bad response's head was counted as sent, though our 502 went instead: `%b` said 4
    bytes of a 119-byte page (review 2026-12-04-backends #4)."""
    head, _, page = _answer(proxy, b"/bad/x").partition(b"\r\n\r\n")
    assert status_of(head) == 502
    [line] = wait_access(proxy, "/bad/x")
    status, size = re.search(r'" (\d{3}) (\d+) ', line).groups()
    assert (status, int(size)) == ("502", len(page)), line


MANY_ASKED: list = []


def _many_fields(conn) -> None:
    while (head := conn.read_head()) is not None:
        if head.target.endswith("/many"):
            MANY_ASKED.append(head.target)
        if head.target.endswith("/slow"):
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8192\r\n\r\n")
            for _ in range(8):
                time.sleep(0.1)
                conn.send(b"s" * 1024)
        else:
            conn.send(b"HTTP/1.1 200 OK\r\n" + b"X-F: v\r\n" * 8000 + b"Content-Length: 3\r\n\r\nabc")


@pytest.mark.timeout(60)
def test_a_head_over_the_http2_clients_header_list_limit_is_a_502_for_that_stream_alone(proxy_factory):
    """A client that announced SETTINGS_MAX_HEADER_LIST_SIZE 65536 got 8,000 fields (~290 KB as
    HTTP/2 counts them) and, as RFC 9113 lets it, failed the whole connection: a download on
    it went too (review 2026-12-04-backends #5).  On a balancer route the 502 is ours, not the
    member's: no failover sending the request to every member (review 2026-12-04-fixes #1)."""
    backends = [RawBackend(_many_fields), RawBackend(_many_fields)]
    MANY_ASKED.clear()
    try:
        proxy = proxy_factory([{"path": "/", "to": "balancer://pair/"}], workers=1, start=False,
                              balancers={"pair": {"members": [{"url": b.url} for b in backends]}})
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        client = H2Client(proxy.port, settings={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536})
        slow, many = client.request("GET", "/slow"), client.request("GET", "/many")
        client.wait(lambda: client.streams[slow].finished and client.streams[many].finished, 20, "both streams")
        assert client.streams[many].status == 502
        assert client.streams[slow].status == 200 and len(client.streams[slow].body) == 8192
        assert MANY_ASKED == ["/many"], MANY_ASKED
        client.close()
    finally:
        for backend in backends:
            backend.close()


def _six_interims_then(final: bytes):
    def handler(conn) -> None:
        conn.read_head()
        conn.send(EARLY_HINTS * 6 + final)
    return handler


@pytest.mark.timeout(60)
def test_the_interim_count_starts_anew_with_each_balancer_member(proxy_factory):
    """Member A's 6 interim heads and then the close, member B's 6 and then 200: B's answer is
    the client's, not a 502 blamed on B (review 2026-12-04-fixes #7)."""
    bad = RawBackend(_six_interims_then(b""))
    good = RawBackend(_six_interims_then(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    try:
        proxy = proxy_factory([{"path": "/", "to": "balancer://pair/"}], workers=1,
                              balancers={"pair": {"method": "byrequests",
                                                  "members": [{"url": bad.url}, {"url": good.url}]}})
        for _ in range(2):                  # whichever member byrequests starts with
            answer = _answer(proxy, b"/x", b"1.0")
            assert status_of(answer) == 200 and answer.endswith(b"ok"), answer[-200:]
    finally:
        bad.close()
        good.close()
