"""Bodies through the rebuilt HTTP path (issue #12): large Content-Length and chunked bodies
both ways, byte for byte, with the worker's splice pipe and without it (MPM_SPLICE=0), and
proof of which copy path ran; an ANY route tunnels whatever protocol the backend switches to."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time

import pytest
from rawbackend import RawBackend, respond
from rawsock import read_head, recv_until_close, status_of

SIZE = 16 << 20
PATTERN = bytes(range(256)) * 4096          # 1 MiB, position-stamped modulo 256


def body(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def _backend_handler(conn):
    """GET /cl/N: N bytes with Content-Length; GET /chunked/N: N bytes in 64 KiB chunks;
    POST: answers the length and SHA-256 of the body it got."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        if head.method == "POST":
            got = conn.read_body(head)
            conn.send(respond(200, f"{len(got)} {hashlib.sha256(got).hexdigest()}".encode()))
            continue
        kind, size = head.target.strip("/").split("/")
        payload = body(int(size))
        if kind == "cl":
            conn.send(respond(200, payload))
        elif kind == "paused":      # exactly the proxy's first read (FIRST_READ), then the rest later
            whole = respond(200, payload)
            conn.send(whole[:16384])
            time.sleep(0.3)
            conn.send(whole[16384:])
        else:
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(payload), 65536):
                piece = payload[start:start + 65536]
                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")


@pytest.fixture(scope="module", params=["splice", "recv"])
def env(request, tmp_path_factory):
    backend = RawBackend(_backend_handler)
    from proxyproc import Proxy
    proxy = Proxy(tmp_path_factory.mktemp(request.param), [{"path": "/", "to": backend.url + "/"}], workers=1,
                  environ={"MPM_SPLICE": "1" if request.param == "splice" else "0"},
                  limits={"request_body": 0}).start()
    yield proxy, request.param
    proxy.stop()
    backend.close()


def _exchange(proxy, request: bytes, expect: int) -> tuple[bytes, bytes]:
    """Send `request` (head + body), read one response of `expect` body bytes (any framing)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        sock.sendall(request)
        head, buf = read_head(sock)
        assert status_of(head) == 200, head
        data, _ = recv_until_close(sock, timeout=20, limit=expect * 2 + (1 << 20)) if b"close" in head.lower() \
            else (bytes(buf), False)
        if b"chunked" not in head.lower():
            while len(data) < expect:
                more = sock.recv(1 << 20)
                assert more, "the proxy closed mid-body"
                data += more
            return head, data
        while not data.endswith(b"0\r\n\r\n"):
            more = sock.recv(1 << 20)
            assert more, "the proxy closed mid-body"
            data += more
        return head, _dechunk(data)


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2


@pytest.mark.parametrize("kind", ["cl", "chunked"])
def test_a_16_mib_response_arrives_byte_for_byte(env, kind):
    proxy, _ = env
    head, data = _exchange(proxy, f"GET /{kind}/{SIZE} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), SIZE)
    assert len(data) == SIZE and data == body(SIZE)


@pytest.mark.parametrize("kind", ["cl", "chunked"])
def test_a_16_mib_request_body_arrives_byte_for_byte(env, kind):
    proxy, _ = env
    payload = body(SIZE)
    if kind == "cl":
        request = b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SIZE + payload
    else:
        chunks = b"".join(b"%x\r\n" % len(payload[i:i + 100_000]) + payload[i:i + 100_000] + b"\r\n"
                          for i in range(0, SIZE, 100_000))
        request = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    _, answer = _exchange(proxy, request, 70)
    assert answer == f"{SIZE} {hashlib.sha256(payload).hexdigest()}".encode()


def test_keep_alive_after_a_large_body_then_a_small_one(env):
    """The connection that carried a spliced body goes on carrying requests, on both sides."""
    proxy, _ = env
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        for size in (SIZE // 4, 100, SIZE // 4, 1):
            sock.sendall(f"GET /cl/{size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head, buf = read_head(sock)
            data = bytes(buf)
            while len(data) < size:
                data += sock.recv(1 << 20)
            assert data == body(size)


def test_a_body_that_pauses_after_a_full_first_read(env):
    """The read that brings the head fills its buffer, so the proxy tries the body's next part
    at once (response._relay): when that is not there yet, the body still arrives whole
    once the backend goes on, and the connection serves the next request."""
    proxy, _ = env
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
        for target, size in (("/paused/200000", 200000), ("/cl/100", 100)):
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head, buf = read_head(sock)
            assert status_of(head) == 200, head
            data = bytes(buf)
            while len(data) < size:
                more = sock.recv(1 << 20)
                assert more, "the proxy closed mid-body"
                data += more
            assert data == body(size)


def _splice_pipes(pid: int) -> int:
    """The worker's pipes of the splice size (256 KiB)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(path)
            if not target.startswith("pipe:"):
                continue
            probe = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if fcntl.fcntl(probe, fcntl.F_GETPIPE_SZ) == 256 * 1024:
                found.add(target)
        finally:
            os.close(probe)
    return len(found)


def test_bodies_went_through_the_copy_path_asked_for(env):
    """Runs after the transfers above (same module proxy, one worker, no tunnel ever)."""
    proxy, mode = env
    _exchange(proxy, f"GET /cl/{SIZE} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), SIZE)
    pid = proxy.status()["workers"][0]["pid"]
    assert _splice_pipes(pid) == (1 if mode == "splice" else 0)


# == an ANY route tunnels what the backend switched to ============================================
def _switch_to_other(conn):
    """Answers any upgrade with 101 to a protocol the client did not ask for, then echoes."""
    head = conn.read_head()
    if head is None:
        return
    conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: other-proto\r\nConnection: Upgrade\r\n\r\n")
    while True:
        data = conn.sock.recv(65536)
        if not data:
            return
        conn.sock.sendall(data)


@pytest.mark.parametrize("upgrade, tunnelled", [("ANY", True), ("NONE", True), ("websocket", False)])
def test_any_route_tunnels_whatever_the_backend_switched_to(proxy_factory, upgrade, tunnelled):
    backend = RawBackend(_switch_to_other)
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url.replace("http", "ws") + "/", "upgrade": upgrade}])
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            head, buf = read_head(sock)
            if not tunnelled:
                assert status_of(head) == 502, head
                return
            assert status_of(head) == 101, head
            sock.sendall(b"ping through the tunnel")
            got = bytes(buf)
            while len(got) < 23:
                more = sock.recv(100)
                assert more, f"the tunnel closed after {got!r}"
                got += more
            assert got == b"ping through the tunnel"
    finally:
        backend.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("splice", ["1", "0"])
@pytest.mark.parametrize("chunked", [False, True])
def test_an_upload_slower_than_the_routes_timeout_is_not_cut_while_it_flows(proxy_factory, splice, chunked):
    """The route's timeout (ProxyTimeout) counts from the last body bytes sent to the backend,
    as Apache's and nginx's count between two writes: 12 pieces 0.25 s apart take 3 s against
    a timeout of 1 s, and arrive whole. They got a 504 at the first second."""
    backend = RawBackend(_backend_handler)
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/", "timeout": 1}], workers=1,
                              environ={"MPM_SPLICE": splice})
        pieces = [bytes([65 + i]) * 4096 for i in range(12)]
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % sum(map(len, pieces))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\n" + framing + b"\r\n\r\n")
            for piece in pieces:
                time.sleep(0.25)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            head, buf = read_head(sock)
            assert status_of(head) == 200, head
            whole = b"".join(pieces)
            expected = b"%d %s" % (len(whole), hashlib.sha256(whole).hexdigest().encode())
            while len(buf) < len(expected) and (more := sock.recv(4096)):
                buf += more
        assert bytes(buf) == expected
    finally:
        backend.close()
