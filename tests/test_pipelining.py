"""Pipelined requests against a backend that writes each response in one send, so each
response arrives whole in one read and leaves in one write.

What must hold for the client: pipelined requests are answered in order and at once (an
exchange must never wait on bytes owed to the client by the one before it), a FIN behind the
requests still gets every response before the close, and our own answer to a bad request
behind a good one goes out and closes at once.  These were written for a build that held
such responses to the end of the loop turn (measured and dropped: bench/RESULTS-2026-12-02-night.md),
where the first two hung until a timeout; they guard any later attempt the same way.
Last, heads one after another on one worker from different clients: the worker parses them
with one llhttp parser while each leaves it between messages (worker.http1), so whatever a
client's head leaves it in must cost the next client nothing.
A real proxy with one worker and a raw backend.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from httpclient import Reader
from rawbackend import RawBackend, respond, serve_simple
from rawsock import recv_until_close


@pytest.fixture
def one_write(proxy_factory):
    backend = RawBackend(lambda conn: serve_simple(
        conn, lambda head, body: respond(200, b"r:" + head.target.encode() + b":" + body)))
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    yield proxy, backend
    backend.close()


def _pipelined(paths, body_last: bytes = b"") -> bytes:
    heads = [b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode() for p in paths[:-1]]
    last = paths[-1].encode()
    heads.append(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (last, len(body_last), body_last))
    return b"".join(heads)


@pytest.mark.timeout(20)
def test_pipelined_requests_behind_a_held_response_are_answered_in_order_at_once(one_write):
    proxy, _ = one_write
    paths = [f"/p{i}" for i in range(8)]
    with proxy.connect() as sock:
        started = time.monotonic()
        sock.sendall(_pipelined(paths, b"tail"))
        reader = Reader(sock)
        responses = [reader.response() for _ in paths]
        elapsed = time.monotonic() - started
        again = b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.sendall(again)
        last = reader.response()
    assert [r.body for r in responses] == [b"r:" + p.encode() + b":" for p in paths[:-1]] + [b"r:/p7:tail"]
    assert last.body == b"r:/again:"
    assert elapsed < 3, f"{elapsed:.1f}s: a pipelined exchange waited for its timeout"


@pytest.mark.timeout(20)
def test_every_held_response_goes_before_the_close_after_a_fin(proxy_factory):
    """The last response says Connection: close when the FIN came before its head.  The
    backend holds /f3's answer until the client has shut its side: without that, a client
    descheduled between its send and its shutdown (a loaded CI machine) let all three
    exchanges finish first, and a keep-alive head is then the right answer."""
    fin_sent = threading.Event()

    def answer(head, body):
        if head.target == "/f3":
            fin_sent.wait(10)
        return respond(200, b"r:" + head.target.encode() + b":" + body)

    backend = RawBackend(lambda conn: serve_simple(conn, answer))
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
        with proxy.connect() as sock:
            sock.sendall(_pipelined(["/f1", "/f2", "/f3"]))
            sock.shutdown(socket.SHUT_WR)
            fin_sent.set()
            reader = Reader(sock)
            responses = [reader.response() for _ in range(3)]
            rest, closed = recv_until_close(sock, 3)
    finally:
        backend.close()
    assert [r.body for r in responses] == [b"r:/f1:", b"r:/f2:", b"r:/f3:"]
    assert responses[-1].get("connection") == b"close"
    assert closed and rest == b""


@pytest.mark.timeout(20)
def test_many_clients_get_every_response_whole(one_write):
    """Responses of several clients held in the same turns: each reaches its own client."""
    proxy, _ = one_write
    socks = [proxy.connect() for _ in range(16)]
    try:
        for rnd in range(20):
            for i, sock in enumerate(socks):
                sock.sendall(b"GET /c%d-%d HTTP/1.1\r\nHost: t\r\n\r\n" % (i, rnd))
            for i, sock in enumerate(socks):
                assert Reader(sock).response().body == b"r:/c%d-%d:" % (i, rnd)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.timeout(20)
def test_a_refused_request_behind_a_held_response_is_answered_and_closed_at_once(one_write):
    """Our own 400 goes out behind the held 200 (a plain send sends both), and the
    connection closes then, not when a deadline notices."""
    proxy, _ = one_write
    with proxy.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\nGET /bad HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n")
        reader = Reader(sock)
        first, second = reader.response(), reader.response()
        rest, closed = recv_until_close(sock, 8)
        elapsed = time.monotonic() - started
    assert (first.status, first.body, second.status) == (200, b"r:/ok:", 400)
    assert closed and rest == b""
    assert elapsed < 2, f"closed after {elapsed:.1f}s"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("first", [
    b"GET /a HTTP/1.1\r\nHost: t\r\nProxy-Connection: close\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n",
])
def test_a_clients_head_costs_the_next_client_nothing(one_write, first):
    """Each first head gets its own answer (for the upgrade the backend does not take, a 200);
    then another client's plain GET, twice, is forwarded, and a bad one is still refused."""
    proxy, _ = one_write
    for _ in range(2):
        with proxy.connect() as sock:
            sock.sendall(first)
            assert Reader(sock).response().status == 200
        with proxy.connect() as sock:
            sock.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(sock).response().body == b"r:/next:"
    with proxy.connect() as sock:
        sock.sendall(b"GET /bad HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n")
        assert Reader(sock).response().status == 400
