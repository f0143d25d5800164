"""A pooled backend connection the backend reset while it sat idle, found dead only when
the next request is sent on it.

The worker drops an idle connection when epoll reports its close, so the request goes out
on a dead one only when both arrive in the same turn: the client's request first, the
backend's reset behind it.  The tests make that turn on purpose: the worker is stopped
(SIGSTOP) while the client sends and the backend resets, and continued after, so its next
epoll_wait returns the client's request ahead of the reset.  Then the send fails at once
(ECONNRESET): nothing of the request reached the backend, and the proxy sends it again on a
fresh connection, as it does when the backend closes a pooled connection under a request.
nginx does the same for a cached upstream connection (it does not count the failure
against `proxy_next_upstream_tries`), but not for a POST; here nothing was sent, so a POST
is safe to send again too.
"""

from __future__ import annotations

import os
import signal
import time

import h11
import pytest
from httpclient import Client
from rawbackend import RawBackend, RawConn, respond, serve_simple


def _reset_when_told(conn: RawConn) -> None:
    """Connection 0 answers one request, then resets when the test says; the others serve."""
    backend = conn.backend
    if conn.index == 0:
        conn.read_head()
        conn.send(respond(200, b"first"))
        backend.event("reset").wait(10)
        conn.reset()
        backend.event("was reset").set()
        return
    serve_simple(conn, lambda head, body: respond(200, b"fresh:" + head.target.encode() + b":" + body))


@pytest.fixture
def backend():
    backend = RawBackend(_reset_when_told)
    yield backend
    backend.close()


def _proxy(proxy_factory, backend: RawBackend, environ: dict | None = None):
    """One worker, so the second request meets the pooled connection of the first."""
    return proxy_factory([{"path": "/s/", "to": backend.url + "/s/"}], workers=1, environ=environ)


def _while_stopped(pid: int, backend: RawBackend, send) -> None:
    """With the worker stopped: the client's bytes reach its socket, then the backend's reset
    reaches the pooled connection's."""
    os.kill(pid, signal.SIGSTOP)
    try:
        send()
        time.sleep(0.1)
        backend.event("reset").set()
        assert backend.event("was reset").wait(5)
        time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(20)
def test_a_request_sent_on_a_connection_reset_while_pooled_goes_out_again_on_a_fresh_one(proxy_factory, backend):
    """Sent at once (MPM_BATCH_SENDS=0: a held head would meet the reset's event first)."""
    proxy = _proxy(proxy_factory, backend, {"MPM_BATCH_SENDS": "0"})
    [pid] = proxy.worker_pids()
    with Client(proxy) as client:
        assert client.request("GET", "/s/one").body == b"first"
        client.h.start_next_cycle()
        _while_stopped(pid, backend, lambda: client.send_request("GET", "/s/two"))
        second = client.read_response()
    assert (second.status, second.body) == (200, b"fresh:/s/two:"), proxy.error_text()
    assert [c.index for c in backend.conns] == [0, 1]
    assert [h.target for h in backend.conns[1].requests] == ["/s/two"]


@pytest.mark.timeout(20)
def test_a_post_whose_body_follows_its_head_goes_out_again_on_a_fresh_one(proxy_factory, backend):
    """A head sent ahead of its body is never held: its send fails at once, before any byte
    of the body was read, so the head goes to a fresh connection and the body follows it."""
    proxy = _proxy(proxy_factory, backend)
    [pid] = proxy.worker_pids()
    with Client(proxy) as client:
        assert client.request("GET", "/s/one").body == b"first"
        client.h.start_next_cycle()
        request = h11.Request(method="POST", target="/s/two", headers=[("Host", "t"), ("Content-Length", "5")])
        _while_stopped(pid, backend, lambda: client.sock.sendall(client.h.send(request)))
        time.sleep(0.1)
        client.sock.sendall(client.h.send(h11.Data(data=b"hello")) + client.h.send(h11.EndOfMessage()))
        second = client.read_response()
    assert (second.status, second.body) == (200, b"fresh:/s/two:hello"), proxy.error_text()
    assert [c.index for c in backend.conns] == [0, 1]
