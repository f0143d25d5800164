"""A TLS handshake that fails is logged with its reason, counted, and costs nothing else.

The handshake rounds run in C (conf/_readahead.c `handshake`, issue #20), which raise no
exception when a round has to wait; a round that fails hands the error back to CPython so that
the log line names the same reason CPython's own call would have: OpenSSL's reason for a
protocol error, the system's for a reset; an EOF is said as nginx says it.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

import pytest
import trustme
from rawsock import recv_until_close
from support import wait_for
from test_tls import _https_get, _tls_proxy

# The first bytes of a TLS 1.3 ClientHello: a record header and the start of the message.
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16


# A close_notify alert in a plaintext record, as a client sends it before any key is agreed.
CLOSE_NOTIFY = b"\x15\x03\x03\x00\x02\x01\x00"


def _client_hello() -> bytes:
    """A real TLS 1.3 ClientHello, from a client-side SSL object on memory buffers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _failures(proxy) -> int:
    return sum(w["tls_failures"] for w in proxy.status()["workers"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("warm", [False, True], ids=["handshake-object", "in-the-lane"])
def test_a_failed_handshake_is_logged_with_its_reason(proxy_factory, http_backend, tmp_path, ca, warm):
    """`warm`: after a whole exchange, with an idle backend connection in the pool, a new
    connection's handshake runs in the lane's C (worker.newcomer), else in worker.tls's
    ServerHandshake: the same reasons, counts and closes either way."""
    backend = http_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}], workers=1)
    if warm:
        assert _https_get(proxy, ca)[0].startswith(b"HTTP/1.1 200")
    served = len(backend.requests)
    before, workers = _failures(proxy), sorted(proxy.worker_pids())

    # Plain HTTP on a TLS listener: OpenSSL's reason, the connection closed.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        answer, closed = recv_until_close(sock)
        assert closed and not answer.startswith(b"HTTP/1.1 200")
    wait_for(lambda: "TLS handshake failed: HTTP_REQUEST" in proxy.error_text(), 5,
             what="the protocol error's reason logged")

    # A client that resets the connection between two rounds: the system's reason.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(PARTIAL_HELLO)
        time.sleep(0.3)             # the first round has run, and waits for the rest
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_for(lambda: "TLS handshake failed: Connection reset by peer" in proxy.error_text(), 5,
             what="the reset logged as a reset")

    # A client that closes mid-hello: said as nginx says it, without CPython's "(_ssl.c:1006)"
    # (listeners set OP_IGNORE_UNEXPECTED_EOF, so OpenSSL reports a plain EOF).
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(PARTIAL_HELLO)
        time.sleep(0.3)
    wait_for(lambda: "TLS handshake failed: peer closed the connection" in proxy.error_text(), 5,
             what="the early EOF logged")
    assert "_ssl.c" not in proxy.error_text()

    # A client that says close_notify after its ClientHello and keeps the connection open: the
    # alert is read once, and asking again would only wait (review 2026-12-05-accept #1).
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(_client_hello() + CLOSE_NOTIFY)
        wait_for(lambda: proxy.error_text().count("TLS handshake failed: peer closed the connection") >= 2, 5,
                 what="the close_notify logged as the peer's close")
    assert "did not complete" not in proxy.error_text()

    wait_for(lambda: _failures(proxy) >= before + 4, 5, what="four failures counted")
    # The workers go on (none restarted): a real client is served, and nothing reached the
    # backend before it.
    assert len(backend.requests) == served
    assert _https_get(proxy, ca)[0].startswith(b"HTTP/1.1 200")
    assert sorted(proxy.worker_pids()) == workers
