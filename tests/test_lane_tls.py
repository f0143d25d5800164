"""The keep-alive lane with TLS clients: what only TLS brings to it.

Once a TLS connection's first exchange is over, the lane reads and writes it through its SSL
object (worker/_lane_engine.c).  tests/test_lane.py runs every lane test over TLS as well;
these add what plain connections do not have: records that a read ahead takes in together
(the second one waits in the SSL object, where epoll does not see it), a head cut across two
records, a close_notify between requests, and a switch that keeps TLS clients out.  A real
master with one worker, a raw backend, real TLS clients.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest
from proxyproc import Proxy, wait_access
from rawbackend import RawBackend, respond
from rawsock import HEAD_END
from support import serve_tls

pytestmark = pytest.mark.timeout(60)


def _answer(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        if head.target in ("/cut", "/stall"):       # a 200,000-byte body stops after 5,000
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 5000)
            time.sleep(0.3 if head.target == "/cut" else 3)     # the route's timeout is 1 s
            return                                              # (then the connection closes)
        conn.send(respond(200, f"on {conn.index}: {head.target}".encode()))


def _started(tmp_path, environ=None) -> tuple[Proxy, RawBackend]:
    backend = RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/", "timeout": 1}], workers=1, environ=environ)
    serve_tls(proxy, tmp_path)
    proxy.start()
    return proxy, backend


@pytest.fixture
def tls_proxy(tmp_path):
    proxy, backend = _started(tmp_path)
    yield proxy, backend
    proxy.stop()
    backend.close()


def _response(sock, buf: bytearray) -> bytes:
    """One response with a Content-Length body (what `_answer` sends)."""
    while HEAD_END not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {bytes(buf)!r}"
        buf += chunk
    end = buf.index(HEAD_END) + 4
    length = int(bytes(buf[:end]).lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        assert chunk, "closed in a body"
        buf += chunk
    body = bytes(buf[end:end + length])
    del buf[:end + length]
    return body


def _get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()


def _backend_connections(backend: RawBackend, prefix: str) -> set[int]:
    return {conn.index for conn in backend.conns for request in conn.requests if request.target.startswith(prefix)}


def test_two_records_read_together_are_both_answered_in_order(tls_proxy):
    """Two requests in two TLS records sent in one TCP segment: a read ahead takes both, the
    first comes out of SSL_read and the second stays in the SSL object.  The lane must not wait
    on epoll for it (nothing more will come): both are answered, in order, at once."""
    proxy, _ = tls_proxy
    with proxy.connect(10) as sock:
        buf = bytearray()
        sock.sendall(_get("/first"))
        assert _response(sock, buf).endswith(b": /first")
        for round_ in range(20):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            sock.sendall(_get(f"/a{round_}"))           # a record each
            sock.sendall(_get(f"/b{round_}"))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            started = time.monotonic()
            assert _response(sock, buf).endswith(b": /a%d" % round_)
            assert _response(sock, buf).endswith(b": /b%d" % round_)
            assert time.monotonic() - started < 2, "the second request waited"
            sock.sendall(_get(f"/after{round_}"))     # and the lane goes on
            assert _response(sock, buf).endswith(b": /after%d" % round_)


def test_a_head_cut_across_two_records_is_answered(tls_proxy):
    proxy, _ = tls_proxy
    with proxy.connect(10) as sock:
        buf = bytearray()
        sock.sendall(_get("/first"))
        _response(sock, buf)
        head = _get("/cut-in-two")
        sock.sendall(head[:17])
        time.sleep(0.1)
        sock.sendall(head[17:])
        assert _response(sock, buf).endswith(b": /cut-in-two")
        sock.sendall(_get("/then"))
        assert _response(sock, buf).endswith(b": /then")


def test_a_close_notify_between_requests_gets_ours_and_the_close(tls_proxy):
    """A client that ends its TLS session properly while the lane holds the connection: the
    proxy answers with its own close_notify (RFC 8446 §6.1) and closes, and the exchanges are
    all in the access log."""
    proxy, _ = tls_proxy
    sock = proxy.connect(10)
    buf = bytearray()
    for n in range(3):
        sock.sendall(_get(f"/cn{n}"))
        assert _response(sock, buf).endswith(b": /cn%d" % n)
    plain = sock.unwrap()       # sends ours, then waits for the proxy's
    try:
        plain.settimeout(5)
        assert plain.recv(1) == b"", "the proxy closes after its close_notify"
    finally:
        plain.close()
    assert len(wait_access(proxy, '"GET /cn', 3)) == 3


@pytest.mark.parametrize("path", ["/cut", "/stall"])
def test_a_response_cut_short_ends_without_close_notify(tls_proxy, path):
    """The backend closes (/cut) or stalls past the route's timeout (/stall) in the middle of a
    body the lane relays: the client's connection ends without our close_notify, as the Python
    path ends it (worker.client's close), so that a client reading to the end sees a truncation
    and not an orderly end (RFC 8446 §6.1).  Review 2026-12-05-tls #1: the lane's close sent one."""
    proxy, _ = tls_proxy
    with proxy.connect(10) as sock:
        sock.suppress_ragged_eofs = False
        buf = bytearray()
        for n in range(2):
            sock.sendall(_get(f"/before{n}"))
            _response(sock, buf)
        sock.sendall(_get(path))
        got = b""
        with pytest.raises(ssl.SSLEOFError):        # a clean close_notify would end the loop instead
            while chunk := sock.recv(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.1 200 ") and 0 < len(got.split(HEAD_END, 1)[1]) < 200000
    assert wait_access(proxy, f'"GET {path} ')[0].rstrip().endswith("X"), "logged as aborted"


def test_tls_clients_stay_out_of_the_lane_with_the_switch_off(tmp_path):
    """MPM_NATIVE_LANE_TLS=0: TLS clients are served by worker/exchange.py only.  What shows
    it: two clients taking turns share the warm backend connection the pool hands out (the
    lane would pin one to each), and every answer is right all the same."""
    results = {}
    for switch in ("1", "0"):
        proxy, backend = _started(tmp_path / switch, {"MPM_NATIVE_LANE_TLS": switch})
        try:
            socks = [proxy.connect(10), proxy.connect(10)]
            bufs = [bytearray(), bytearray()]
            for i in range(10):
                for n, sock in enumerate(socks):
                    sock.sendall(_get(f"/turn/{n}/{i}"))
                    assert _response(sock, bufs[n]).endswith(b": /turn/%d/%d" % (n, i))
            for sock in socks:
                sock.close()
            results[switch] = [_backend_connections(backend, f"/turn/{n}/") for n in range(2)]
        finally:
            proxy.stop()
            backend.close()
    pinned, pooled = results["1"], results["0"]
    assert all(len(conns) <= 2 for conns in pinned) and pinned[0] != pinned[1], pinned
    assert pooled[0] & pooled[1], f"without the lane the pool shares its warm connection: {pooled}"
