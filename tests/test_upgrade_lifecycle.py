"""How tunnels end (issue #4): the backend dying mid-tunnel, the client vanishing, and
half-close, where one side's EOF must not stop the other direction.

Routes of the module's proxy:
    /ws/   -> a `websockets` backend
    /raw/  -> a raw-socket backend
Each test picks what its backend does (`_use` / `_use_ws` with one of the named behaviours
below); results are recorded under the request target the test chose.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
import threading
import time
from functools import partial
from types import SimpleNamespace

import pytest
from backends import WebSocketBackend
from proxyproc import running_proxy, total_tunnels
from rawbackend import RawBackend, RawConn
from rawsock import is_closed, read_head, recv_exact, recv_until_eof, status_of
from support import wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from wsutil import CLIENT_OPTIONS, OP_TEXT, frame, read_frame, switch_response, upgrade_request

BIG = 16 * 1024 * 1024
CLOSED = {}           # ws path -> (close code seen by the backend, monotonic time)


# == what the WebSocket backend does ====================================================================
async def _abort_after_first_message(connection):
    """The backend process "dies" after one message: RST, no close frame."""
    await connection.recv()
    connection.transport.abort()


async def _echo_and_record_close_code(connection):
    """Echo until the client goes; record the close code it saw, and when."""
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass
    CLOSED[connection.request.path] = (connection.close_code, time.monotonic())


# == what the raw backend does ===========================================================================
def _reset(sock: socket.socket) -> None:
    """Close with RST, as a crashed process's kernel would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _switch(conn: RawConn) -> str:
    """Read the upgrade request, answer 101; the request target (the key of what we record)."""
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    return head.target


def _record(conn: RawConn, key: str, result) -> None:
    conn.backend.results[key] = result
    conn.backend.event(key).set()


def _say_bye_then_close(conn: RawConn, how: str) -> None:
    """Read the client's "hello", answer "bye!!", then end with a FIN or, 0.1 s later, an RST."""
    _switch(conn)
    conn.exactly(5)
    conn.send(b"bye!!")
    if how == "rst":
        time.sleep(0.1)
        _reset(conn.sock)


def _watch_how_the_client_goes(conn: RawConn) -> None:
    """Echo until the client side ends; record whether that was an EOF or a reset."""
    key = _switch(conn)
    conn.sock.settimeout(10)
    try:
        while data := conn.sock.recv(65536):
            conn.sock.sendall(data)
        result = "eof"
    except ConnectionResetError:
        result = "reset"
    except TimeoutError:
        result = "timeout"
    _record(conn, key, result)


def _stream_until_the_client_is_gone(conn: RawConn) -> None:
    """Send until a send fails: it must fail soon after the client vanished."""
    key = _switch(conn)
    conn.sock.settimeout(10)
    chunk = b"s" * 65536
    try:
        while True:
            conn.sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        _record(conn, key, "gone")
    except TimeoutError:
        _record(conn, key, "timeout")


def _answer_after_the_clients_eof(conn: RawConn, size: int) -> None:
    """Read the client's data up to its EOF (recorded), then answer `size` bytes + END and close."""
    key = _switch(conn)
    conn.backend.results[key] = recv_until_eof(conn.sock, conn.buf)
    conn.send(b"R" * size + b"END")
    conn.sock.shutdown(socket.SHUT_WR)


def _push_as_fast_as_possible(conn: RawConn, size: int) -> None:
    """`size` bytes as fast as we can, then EOF: the proxy must hold back for a slow client."""
    _switch(conn)
    block = bytes(range(256)) * 4096            # 1 MiB
    for _ in range(size // len(block)):
        conn.sock.sendall(block)
    conn.sock.shutdown(socket.SHUT_WR)
    recv_until_eof(conn.sock, limit=15)


def _send_and_read_at_once(conn: RawConn, size: int) -> None:
    """Send our `size`-byte stream while reading the client's (recorded), both at full speed."""
    key = _switch(conn)
    got = bytearray(conn.take_buffered())

    def reader():
        while data := conn.sock.recv(1 << 20):
            got.extend(data)
    thread = threading.Thread(target=reader)
    thread.start()
    conn.sock.sendall(_pattern(size, 7))
    conn.sock.shutdown(socket.SHUT_WR)
    thread.join(20)
    _record(conn, key, bytes(got))


def _answer_101_late_then_watch(conn: RawConn) -> None:
    """Signal "#request", wait 0.5 s (the client is gone by then), answer 101, record how the client went."""
    head = conn.read_head()
    conn.backend.event(head.target + "#request").set()
    time.sleep(0.5)
    conn.send(switch_response("websocket", head.raw))
    conn.sock.settimeout(10)
    try:
        while conn.sock.recv(65536):
            pass
        result = "eof"
    except ConnectionResetError:
        result = "reset"
    except TimeoutError:
        result = "timeout"
    _record(conn, head.target, result)


def _count_after_a_late_101(conn: RawConn) -> None:
    """Answer 101 after 0.3 s (the client's bytes pile up behind its head), record every byte up to EOF."""
    head = conn.read_head()
    time.sleep(0.3)
    conn.send(switch_response("websocket", head.raw))
    _record(conn, head.target, recv_until_eof(conn.sock, conn.buf, limit=15))


def _half_close_first_then_read(conn: RawConn, slow: bool) -> None:
    """Say goodbye and half-close at once, then read (slowly if asked: the proxy has to hold
    back) and record what the client still sends."""
    key = _switch(conn)
    conn.send(b"server done")
    conn.sock.shutdown(socket.SHUT_WR)
    received = bytearray(conn.take_buffered())
    if slow:
        time.sleep(0.5)
    while data := conn.sock.recv(65536):
        received += data
        if slow:
            time.sleep(0.002)
    _record(conn, key, bytes(received))


def _pattern(size: int, seed: int) -> bytes:
    block = bytes((i * seed + (i >> 8)) & 0xFF for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


# Every test here runs three times: plain tunnels relayed by the C relay (tunnel.native, the
# default where it is built) splicing bulk reads, the same with recv + send only (MPM_SPLICE=0),
# and tunnel.tunnel's Python path (MPM_NATIVE_RELAY=0: the reference, and what TLS tunnels
# take), so every path meets every ending, half-close and back-pressure case.
ENVIRONS = {"splice": {"MPM_SPLICE": "1"}, "recv": {"MPM_SPLICE": "0"},
            "python": {"MPM_SPLICE": "1", "MPM_NATIVE_RELAY": "0"}}


@pytest.fixture(scope="module", params=list(ENVIRONS))
def env(tmp_path_factory, request):
    ws = WebSocketBackend()
    raw = RawBackend(timeout=20)
    routes = [
        {"path": "/ws/", "to": f"ws://127.0.0.1:{ws.port}/ws/"},
        {"path": "/raw/", "to": raw.ws_url + "/raw/"},
    ]
    try:
        with running_proxy(tmp_path_factory.mktemp("upgrade-lifecycle"), routes,
                           environ=ENVIRONS[request.param]) as proxy:
            yield SimpleNamespace(proxy=proxy, raw=raw, ws=ws)
    finally:
        ws.close()
        raw.close()


def _use(env, behaviour):
    """The module's proxy, its raw backend running `behaviour` for the connections this test makes."""
    env.raw.handler = behaviour
    return env.proxy, env.raw


def _use_ws(env, behaviour):
    env.ws.handler = behaviour
    return env.proxy


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
    proxy = _use_ws(env, _abort_after_first_message)

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
    proxy, _ = _use(env, partial(_say_bye_then_close, how=how))
    sock, buf = _open(proxy, f"/raw/die-{how}")
    with sock:
        sock.sendall(b"hello")
        assert recv_exact(sock, 5, buf) == b"bye!!"
        assert is_closed(sock, 5), "the client's connection stayed open after the backend went away"


# == the client vanishes ===============================================================================
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_backend_sees_the_websocket_client_vanish(env, how):
    proxy = _use_ws(env, _echo_and_record_close_code)
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
    proxy, raw = _use(env, _watch_how_the_client_goes)
    path = f"/raw/watch?{how}"
    sock, buf = _open(proxy, path)
    sock.sendall(b"ping")
    assert recv_exact(sock, 4, buf) == b"ping"
    _reset(sock) if how == "rst" else sock.close()
    assert raw.event(path).wait(5), "the backend never saw the client go"
    assert raw.results[path] in ("eof", "reset")


def test_streaming_backend_notices_the_client_vanish(env):
    proxy, raw = _use(env, _stream_until_the_client_is_gone)
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
    then closes: the client gets every byte of the answer, then EOF.

    Guards against a half-closed tunnel ending on the EPOLLHUP that the backend's FIN raises
    while the client side is paused by back-pressure: the pending bytes were dropped (the
    client got ~14.7 of 16 MiB, then EOF, logged as end="hangup")."""
    proxy, raw = _use(env, partial(_answer_after_the_clients_eof, size=size))
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


@pytest.mark.parametrize("size,pace", [(100_000, "fast"), (BIG, "slow")])
def test_backend_half_close_still_carries_the_clients_data(env, size, pace):
    """The backend says goodbye and shuts down its writing side; the client reads the
    goodbye and EOF, then still sends its data and closes: the backend gets all of it.
    The same hangup bug as above, the other way round: a slow-reading backend got 12.5 of
    16 MiB."""
    proxy, raw = _use(env, partial(_half_close_first_then_read, slow=pace == "slow"))
    path = f"/raw/eof-first?size={size}&{pace}"
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


# == back-pressure ==========================================================================================
def _worker_rss(proxy) -> int:
    return max(w["rss"] for w in proxy.status()["workers"])


def test_slow_client_holds_the_backend_back_without_buffering_in_the_proxy(env):
    """64 MiB pushed at a client that does not read for a while: the proxy keeps at most
    a read's worth per direction, so its workers' memory stays flat."""
    size = 64 * 1024 * 1024
    proxy, _ = _use(env, partial(_push_as_fast_as_possible, size=size))
    before = _worker_rss(proxy)
    sock, buf = _open(proxy, f"/raw/push?size={size}", rcvbuf=64 * 1024)
    with sock:
        time.sleep(1.0)                       # the backend fills every buffer on the way
        during = _worker_rss(proxy)
        block = bytes(range(256)) * 4096
        received = 0
        data = bytes(buf)
        sock.settimeout(15)
        while True:
            if data:
                expected = (block * 2)[received % len(block):received % len(block) + len(data)]
                assert data == expected, f"corrupted stream at byte {received}"
                received += len(data)
            data = sock.recv(1 << 20)
            if not data:
                break
    assert received == size
    assert during - before < 16 * 1024 * 1024, f"a worker grew by {(during - before) >> 20} MiB"


@pytest.mark.parametrize("size", [10, 1 << 20])
def test_client_bytes_and_eof_sent_while_the_101_is_awaited(env, size):
    """The client sends its data right behind its handshake and half-closes; the backend
    answers 0.3 s later.  Every byte (1 MiB is beyond the proxy's read-ahead) reaches it
    after the 101, in order, and then the client's EOF does."""
    proxy, raw = _use(env, _count_after_a_late_101)
    payload = os.urandom(size)
    path = f"/raw/count?{size}"
    with proxy.connect(timeout=10) as sock:
        def send():
            sock.sendall(upgrade_request(path) + payload)
            sock.shutdown(socket.SHUT_WR)
        thread = threading.Thread(target=send)
        thread.start()
        head, _ = read_head(sock)
        assert status_of(head) == 101, head
        thread.join(10)
        assert raw.event(path).wait(10)
    received = raw.results[path]
    assert len(received) == len(payload)
    assert received == payload


def test_full_duplex_bulk_both_ways_at_once(env):
    """16 MiB each way at the same time: both directions under back-pressure at once."""
    size = 16 * 1024 * 1024
    proxy, raw = _use(env, partial(_send_and_read_at_once, size=size))
    path = f"/raw/duplex?size={size}"
    mine = _pattern(size, 13)
    sock, buf = _open(proxy, path)
    with sock:
        got = bytearray(buf)
        errors = []

        def reader():
            try:
                got.extend(recv_until_eof(sock, limit=20))
            except OSError as exc:
                errors.append(exc)
        thread = threading.Thread(target=reader)
        thread.start()
        sock.sendall(mine)
        sock.shutdown(socket.SHUT_WR)
        thread.join(25)
        assert not errors, errors
    assert raw.event(path).wait(10)
    assert len(got) == size and bytes(got) == _pattern(size, 7)
    assert len(raw.results[path]) == size and raw.results[path] == mine


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_gone_before_the_101_ends_the_backend_connection(env, how):
    proxy, raw = _use(env, _answer_101_late_then_watch)
    path = f"/raw/late?{how}"
    sock = proxy.connect()
    sock.sendall(upgrade_request(path))
    assert raw.event(path + "#request").wait(5)
    _reset(sock) if how == "rst" else sock.close()
    assert raw.event(path).wait(8), "the backend's connection outlived the client"
    assert raw.results[path] in ("eof", "reset")


def test_no_tunnel_is_left_open_after_every_ending_above(env):
    """Runs last in this module: whatever way the tunnels above ended (FIN, RST, half-close,
    idle client, dead backend), the scoreboard has counted every one of them closed."""
    proxy = env.proxy
    wait_for(lambda: total_tunnels(proxy) == 0, 10, 0.2, "the scoreboard to count no open tunnel")
    status = proxy.status()
    assert status["totals"]["connections"] == 0, status["workers"]


def test_tunnels_relayed_through_the_copy_path_asked_for(env, request):
    """splice mode: a worker holds the 256 KiB pipe it splices through; recv mode: no
    worker has one (its other pipes, to the master and for signals, have the default size)."""
    proxy, _ = _use(env, partial(_push_as_fast_as_possible, size=2 << 20))
    spliced = request.node.callspec.params["env"] != "recv"
    sock, buf = _open(proxy, f"/raw/push?size={2 << 20}")
    with sock:
        assert len(buf) + len(recv_until_eof(sock, limit=10)) == 2 << 20

    def splice_pipes(pid: int) -> int:
        found = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            path = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(path)
                if not target.startswith("pipe:"):
                    continue
                probe = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # the same pipe, opened anew
            except OSError:
                continue
            try:
                if fcntl.fcntl(probe, fcntl.F_GETPIPE_SZ) == 256 * 1024:
                    found.add(target)
            finally:
                os.close(probe)
        return len(found)

    counts = [splice_pipes(worker["pid"]) for worker in proxy.status()["workers"]]
    assert (max(counts) == 1) if spliced else (counts == [0] * len(counts)), counts
