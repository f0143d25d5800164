"""A keep-alive connection whose listener a reload removes, or turns into a TLS listener,
is not served on for ever by the generations that follow.

Before the fix the new worker adopted it like any other and kept it alive, and every later
reload moved it on again: a client connected to a port the operator had closed (or left
plain when the port became TLS-only) was served for as long as it kept sending.  nginx and
Apache close such a connection at the reload (idle keep-alive connections of old workers are
closed); HAProxy's `idle-close-on-response` lets it finish its next response.  Here it is
still handed over (a request it is sending at that moment is not lost) and answered once
more, with `Connection: close`; a connection on a listener the new configuration keeps stays
open as before.  (review 2026-12-03-handover #1)"""

from __future__ import annotations

import socket

import pytest
from rawbackend import RawBackend, serve_simple
from rawsock import http_response_body, read_head, recv_until_close, status_of, tokens
from support import free_port, wait_for


@pytest.fixture
def backend():
    server = RawBackend(serve_simple)
    yield server
    server.close()


def _get(sock: socket.socket, path: str) -> tuple[int, set, bytes]:
    """(status, Connection tokens, head) of one keep-alive GET."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
    head, buf = read_head(sock)
    http_response_body(sock, head, buf)
    return status_of(head), tokens(head, "Connection"), head


def _reload_and_wait(proxy, generation: int) -> None:
    old = proxy.worker_pids()
    proxy.write_config()
    result = proxy.reload()
    assert result.returncode == 0, result.stdout + result.stderr
    proxy.wait_ready(generation=generation)
    wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 10, 0.05,
             "the old worker to hand its connections over and exit")


@pytest.mark.timeout(60)
def test_a_connection_on_a_removed_listener_is_closed_after_its_next_response(proxy_factory, backend):
    kept_port, gone_port = free_port(), free_port()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, start=False,
                          timeouts={"keepalive": 30})
    proxy.config["listen"] = [f"127.0.0.1:{kept_port}", f"127.0.0.1:{gone_port}"]
    proxy.start()
    with socket.create_connection(("127.0.0.1", kept_port), timeout=10) as kept, \
            socket.create_connection(("127.0.0.1", gone_port), timeout=10) as gone:
        assert _get(kept, "/a")[:2] == (200, set()) and _get(gone, "/b")[:2] == (200, set())
        proxy.config["listen"] = [f"127.0.0.1:{kept_port}"]
        _reload_and_wait(proxy, 2)
        status, connection, head = _get(gone, "/c")
        assert status == 200, head
        assert connection == {"close"}, f"a connection on a listener the reload removed is kept alive: {head!r}"
        assert recv_until_close(gone, 5)[1], "it is closed after that response"
        assert _get(kept, "/d")[:2] == (200, set()), "a listener the reload kept keeps its connections alive"
    assert "a listener this configuration does not have" in proxy.error_text()


@pytest.mark.timeout(60)
def test_a_plain_connection_on_a_listener_turned_tls_is_closed_after_its_next_response(
        proxy_factory, backend, tmp_path):
    import trustme
    from support import cert_files
    cert, key = cert_files(trustme.CA(), str(tmp_path), "localhost")
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"keepalive": 30})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as plain:
        assert _get(plain, "/a")[:2] == (200, set())
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": cert, "key": key}}]
        _reload_and_wait(proxy, 2)
        status, connection, head = _get(plain, "/b")
        assert status == 200, head
        assert connection == {"close"}, f"a plain connection on a now TLS-only address is kept alive: {head!r}"
        assert recv_until_close(plain, 5)[1]
