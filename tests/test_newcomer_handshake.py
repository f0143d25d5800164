"""A new TLS connection whose handshake runs in the lane's C (worker/_lane_handshake.c), from
its accept: what happens when it ends otherwise than in one HTTP/1.1 request.

A new connection is carried that way once an idle backend connection waits in the pool (after a
whole exchange on another connection: `_warm`).  Failed and stalled handshakes on that path are
tests/test_tls_handshake_failures.py's and test_tls.py's `in-the-lane` cases; this file covers the
client that chooses HTTP/2 by ALPN, a handshake under way when the worker stops, and a full
worker closing a handshake under way for room.
"""

from __future__ import annotations

import socket
import time

import pytest
from h2client import H2Client
from newcomerutil import HalfwayClient, client_context, echo, https_get, tls_proxy
from proxyproc import Proxy
from rawbackend import RawBackend
from support import wait_for
from test_tls_handshake_failures import PARTIAL_HELLO

pytestmark = pytest.mark.timeout(60)



def _proxy(tmp_path, ca, **sections) -> tuple[Proxy, RawBackend]:
    backend = RawBackend(echo)
    return tls_proxy(tmp_path, ca, backend, timeouts={"handshake": 5, "client_header": 5}, **sections), backend


def _warm(proxy, ca) -> None:
    """A whole exchange: an idle backend connection waits in the pool, so the next new TLS
    connections have their handshakes run in the lane."""
    assert https_get(proxy.port, client_context(ca), "/warm").endswith(b"GET /warm")
    time.sleep(0.05)


def test_a_client_that_chooses_http2_is_served_over_http2(tmp_path, ca):
    """The C ends the handshake; the connection goes where a ServerHandshake would send it."""
    proxy, backend = _proxy(tmp_path, ca)
    try:
        _warm(proxy, ca)
        for n in range(3):
            client = H2Client(proxy.port, tls=client_context(ca, ("h2", "http/1.1")))
            stream = client.get(f"/over-h2/{n}")
            assert stream.status == 200 and bytes(stream.body) == f"GET /over-h2/{n}".encode()
            client.close()
        assert https_get(proxy.port, client_context(ca), "/after").endswith(b"GET /after")     # and HTTP/1.1 still so
        wait_for(lambda: sum('"GET /over-h2/' in line and "HTTP/2.0" in line for line in proxy.access_lines()) == 3,
                 5, 0.05, "three HTTP/2 requests logged")
    finally:
        proxy.stop()
        backend.close()


def test_a_handshake_under_way_at_a_reload_is_finished_and_served(tmp_path, ca):
    """Its worker stops (a reload): the handshake goes on there, and its request is answered
    there, as a ServerHandshake's would be (a TLS connection cannot move)."""
    proxy, backend = _proxy(tmp_path, ca)
    try:
        _warm(proxy, ca)
        halfway = HalfwayClient(proxy.port, client_context(ca))
        old = proxy.worker_pids()
        assert proxy.reload().returncode == 0
        wait_for(lambda: proxy.worker_pids() != old, 10, 0.05, "the next generation")
        halfway.send_finished_with(b"GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = halfway.answer(5)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"GET /late<closed>")
        assert https_get(proxy.port, client_context(ca), "/next").endswith(b"GET /next")
    finally:
        proxy.stop()
        backend.close()


def test_a_full_worker_closes_the_oldest_handshake_under_way_for_room(tmp_path, ca):
    proxy, backend = _proxy(tmp_path, ca, mpm={"threads_per_child": 4, "max_request_workers": 4, "server_limit": 1})
    stalled = []
    try:
        _warm(proxy, ca)
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            sock.sendall(PARTIAL_HELLO)         # its first round has run, and waits for the rest
            stalled.append(sock)
            time.sleep(0.05)
        wait_for(lambda: proxy.status()["totals"]["connections"] == 4, 5, 0.05, "a full worker")
        assert https_get(proxy.port, client_context(ca), "/room").endswith(b"GET /room")
        stalled[0].settimeout(3)
        assert stalled[0].recv(100) == b""      # the oldest, closed for room
        stalled[1].settimeout(0.3)
        with pytest.raises(TimeoutError):       # the others wait on
            stalled[1].recv(100)
        wait_for(lambda: "at capacity" in proxy.error_text(), 5, 0.05, "the room logged")
    finally:
        for sock in stalled:
            sock.close()
        proxy.stop()
        backend.close()
