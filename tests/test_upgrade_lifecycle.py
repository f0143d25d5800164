"""How tunnels end (issue #4): the backend dying mid-tunnel, the client vanishing, and
half-close, where one side's EOF must not stop the other direction.

Routes of the module's proxy:
    /ws/   -> a `websockets` backend (behaviour chosen by the path)
    /raw/  -> a raw-socket backend (behaviour chosen by the path)
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time

import pytest
from conftest import WebSocketBackend, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from wsutil import (
    CLIENT_OPTIONS,
    OP_TEXT,
    RawBackend,
    frame,
    is_closed,
    read_frame,
    read_head,
    recv_exact,
    recv_until_eof,
    running_proxy,
    status_of,
    switch_response,
    upgrade_request,
)

BIG = 16 * 1024 * 1024
CLOSED = {}           # ws path -> (close code seen by the backend, monotonic time)


async def _ws_behaviour(connection):
    path = connection.request.path
    if path.startswith("/ws/abort"):
        await connection.recv()
        connection.transport.abort()          # the backend process "dies": RST, no close frame
        return
    if path.startswith("/ws/watch"):
        try:
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass
        CLOSED[path] = (connection.close_code, time.monotonic())


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a crashed process's kernel would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _raw_behaviour(conn, head, rest, backend):
    path = head.split(b" ", 2)[1].decode()
    conn.sendall(switch_response("websocket", head))
    name = path.split("?")[0]
    if name == "/raw/die-fin":
        recv_exact(conn, 5, rest)
        conn.sendall(b"bye!!")
    elif name == "/raw/die-rst":
        recv_exact(conn, 5, rest)
        conn.sendall(b"bye!!")
        time.sleep(0.1)
        _reset(conn)
    elif name == "/raw/watch":
        # Echo until the client side closes; record how we learnt it.
        conn.settimeout(10)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    backend.results[path] = "eof"
                    break
                conn.sendall(data)
        except ConnectionResetError:
            backend.results[path] = "reset"
        except TimeoutError:
            backend.results[path] = "timeout"
        backend.event(path).set()
    elif name == "/raw/stream":
        # Send until the client is gone: a send must fail soon after it vanished.
        conn.settimeout(10)
        chunk = b"s" * 65536
        try:
            while True:
                conn.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            backend.results[path] = "gone"
        except TimeoutError:
            backend.results[path] = "timeout"
        backend.event(path).set()
    elif name == "/raw/reply-after-eof":
        # Read the client's data up to its EOF, then answer and close.
        size = int(path.split("size=")[1])
        received = bytes(rest) + recv_until_eof(conn)
        backend.results[path] = received
        conn.sendall(b"R" * size + b"END")
        conn.shutdown(socket.SHUT_WR)
    elif name == "/raw/eof-first":
        # Say goodbye and half-close at once, then read what the client still sends.
        conn.sendall(b"server done")
        conn.shutdown(socket.SHUT_WR)
        delay = float(path.split("delay=")[1])
        time.sleep(delay)                    # a slow reader: the proxy has to hold back
        backend.results[path] = bytes(rest) + recv_until_eof(conn, limit=15)
        backend.event(path).set()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ws = WebSocketBackend(_ws_behaviour)
    raw = RawBackend(_raw_behaviour)
    routes = [
        {"path": "/ws/", "to": f"ws://127.0.0.1:{ws.port}/ws/"},
        {"path": "/raw/", "to": raw.url("ws", "/raw/")},
    ]
    try:
        with running_proxy(tmp_path_factory.mktemp("upgrade-lifecycle"), routes) as proxy:
            yield proxy, raw
    finally:
        ws.close()
        raw.close()


def _open(proxy, path: str, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", proxy.port))
    sock.sendall(upgrade_request(path))
    head, buf = read_head(sock)
    assert status_of(head) == 101, head
    return sock, buf


# == the backend dies =================================================================================
def test_websocket_client_sees_the_backend_die(env):
    proxy, _ = env

    async def main():
        async with connect(proxy.url("/ws/abort", "ws"), **CLIENT_OPTIONS) as ws:
            await ws.send("this kills the backend")
            started = time.monotonic()
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 5)
            assert time.monotonic() - started < 3
            assert ws.close_code == 1006          # no close frame: the connection just ended
    asyncio.run(asyncio.wait_for(main(), 15))


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_raw_client_sees_the_backend_close(env, how):
    proxy, _ = env
    sock, buf = _open(proxy, f"/raw/die-{how}")
    with sock:
        sock.sendall(b"hello")
        assert recv_exact(sock, 5, buf) == b"bye!!"
        assert is_closed(sock, 5), "the client's connection stayed open after the backend went away"


# == the client vanishes ===============================================================================
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_backend_sees_the_websocket_client_vanish(env, how):
    proxy, _ = env
    path = f"/ws/watch-{how}"
    with proxy.connect() as sock:
        sock.sendall(upgrade_request(path) + frame(b"hello", OP_TEXT))
        head, buf = read_head(sock)
        assert status_of(head) == 101
        assert read_frame(sock, buf) == (OP_TEXT, b"hello")
        gone = time.monotonic()
        if how == "rst":
            _reset(sock)
    code, when = wait_for(lambda: CLOSED.get(path), 5, what="the backend to see the client gone")
    assert code == 1006
    assert when - gone < 3


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_raw_backend_sees_the_client_vanish(env, how):
    proxy, raw = env
    path = f"/raw/watch?{how}"
    sock, buf = _open(proxy, path)
    sock.sendall(b"ping")
    assert recv_exact(sock, 4, buf) == b"ping"
    _reset(sock) if how == "rst" else sock.close()
    assert raw.event(path).wait(5), "the backend never saw the client go"
    assert raw.results[path] in ("eof", "reset")


def test_streaming_backend_notices_the_client_vanish(env):
    proxy, raw = env
    path = "/raw/stream?1"
    sock, buf = _open(proxy, path)
    recv_exact(sock, 256 * 1024, buf)
    _reset(sock)
    assert raw.event(path).wait(8), "the backend kept sending into a tunnel whose client is gone"
    assert raw.results[path] == "gone"


# == half-close ==========================================================================================
@pytest.mark.parametrize("size", [11, BIG])
def test_client_half_close_still_carries_the_backends_answer(env, size):
    """The client sends, shuts down its writing side; the backend sees EOF, answers,
    then closes: the client gets every byte of the answer, then EOF."""
    proxy, raw = env
    path = f"/raw/reply-after-eof?size={size}"
    request = os.urandom(100_000)
    # A small receive buffer and a late reader: the answer has to wait in the proxy.
    sock, buf = _open(proxy, path, rcvbuf=64 * 1024)
    with sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        if size == BIG:
            time.sleep(1.0)
        answer = recv_until_eof(sock, buf, limit=15)
    assert raw.results[path] == request
    assert len(answer) == size + 3
    assert answer == b"R" * size + b"END"


@pytest.mark.parametrize("size,delay", [(100_000, 0.0), (BIG, 1.0)])
def test_backend_half_close_still_carries_the_clients_data(env, size, delay):
    """The backend says goodbye and shuts down its writing side; the client reads the
    goodbye and EOF, then still sends its data and closes: the backend gets all of it."""
    proxy, raw = env
    path = f"/raw/eof-first?size={size}&delay={delay}"
    payload = os.urandom(size)
    sock, buf = _open(proxy, path)
    with sock:
        assert recv_until_eof(sock, buf) == b"server done"
        sender_error = []

        def send():
            try:
                sock.sendall(payload)
            except OSError as exc:
                sender_error.append(exc)
        thread = threading.Thread(target=send)
        thread.start()
        thread.join(15)
        assert not sender_error, sender_error
    # The client closed its socket completely (not just SHUT_WR) right after sending.
    assert raw.event(path).wait(15), "the backend never saw the end of the client's data"
    received = raw.results[path]
    assert len(received) == size
    assert received == payload
