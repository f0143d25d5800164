"""Edge cases of the os.splice copy path (tunnel/tunnel.py `Tunnel._splice`, tunnel/pipes.py) and of
the C relay that takes plain tunnels where it is built (tunnel/_relay.c, tunnel/native.py).

Every test runs real proxy processes (MPM_SPLICE=1) and real loopback sockets, the module's
once with the C relay and once with the Python path (MPM_NATIVE_RELAY=0).  Streams
carry a position-stamped pattern (every 8-byte word is its own offset plus a per-stream
seed), so any byte lost, duplicated, reordered or crossed over between streams shows up
at its exact offset.

Routes of the module's proxy:
    /raw/  -> a raw-socket backend whose behaviour the path chooses
"""

from __future__ import annotations

import array
import fcntl
import os
import re
import signal
import socket
import struct
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from proxyproc import running_proxy, total_tunnels
from rawbackend import RawBackend, RawConn
from rawsock import read_head, recv_exact, recv_until_eof, status_of
from support import wait_for
from wsutil import switch_response, upgrade_request

MiB = 1 << 20
PIPE_SIZE = 256 * 1024


# == patterns ======================================================================================
def pattern(size: int, seed: int) -> bytes:
    """Word i (8 bytes, little-endian) is i + seed << 40: self-locating, unique per stream."""
    words = size // 8 + 1
    base = seed << 40
    return array.array("Q", range(base, base + words)).tobytes()[:size]


def check_stream(got: bytes, size: int, seed: int, what: str) -> None:
    expected = pattern(size, seed)
    if got == expected:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), size))
    raise AssertionError(f"{what}: {len(got)} of {size} bytes, first difference at byte {first}")


def _params(path: str) -> dict:
    query = path.partition("?")[2]
    return {k: v for k, _, v in (p.partition("=") for p in query.split("&") if p)}


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _read_all(conn: socket.socket, into: bytearray, pace: float = 0.0, chunk: int = MiB) -> str:
    try:
        while True:
            data = conn.recv(chunk)
            if not data:
                return "eof"
            into += data
            if pace:
                time.sleep(pace)
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"


# == the backend ===================================================================================
# Tests here open several kinds of tunnel at once, so the backend serves each connection with
# the behaviour its path names (`BEHAVIOURS`); the query holds that behaviour's arguments, and
# what it found is recorded under the request target.
def _push(conn: RawConn, args: dict) -> None:
    """Our pattern (`size`, `seed`), then EOF, then whatever the client sends up to its EOF."""
    conn.sock.sendall(pattern(int(args["size"]), int(args["seed"])))
    conn.sock.shutdown(socket.SHUT_WR)
    recv_until_eof(conn.sock, limit=20)


def _push_then_reset(conn: RawConn, args: dict, key: str) -> None:
    """Push `size` bytes at a client that does not read (signal "#pushed"), then die with a reset."""
    try:
        conn.sock.settimeout(2)
        conn.sock.sendall(pattern(int(args["size"]), 1))
    except (TimeoutError, OSError):
        pass
    conn.backend.event(key + "#pushed").set()
    _reset(conn.sock)


def _sink(conn: RawConn, args: dict, key: str) -> None:
    """Read everything up to EOF (after `delay`, at `pace` per `chunk` if asked), record it,
    answer with the count, close."""
    if "delay" in args:
        time.sleep(float(args["delay"]))
    got = bytearray(conn.take_buffered())
    how = _read_all(conn.sock, got, float(args.get("pace", 0)), int(args.get("chunk", MiB)))
    _record(conn, key, (how, bytes(got)))
    if how == "eof":
        conn.sock.sendall(b"got %d" % len(got))


def _echo_until_the_end(conn: RawConn) -> None:
    """Echo every byte (256 KiB reads) until EOF or a reset."""
    try:
        if early := conn.take_buffered():
            conn.sock.sendall(early)
        while data := conn.sock.recv(1 << 18):
            conn.sock.sendall(data)
    except ConnectionResetError:
        pass


def _bye_while_the_client_is_blocked(conn: RawConn, key: str) -> None:
    """Wait until the client has filled the proxy's way to us (a to_backend leftover; the test
    signals "#filled"), say goodbye and half-close while that direction is blocked, then read
    it all and record it."""
    assert conn.backend.event(key + "#filled").wait(10)
    conn.sock.sendall(b"bye")
    conn.sock.shutdown(socket.SHUT_WR)
    got = bytearray(conn.take_buffered())
    _record(conn, key, (_read_all(conn.sock, got), bytes(got)))


def _duplex_with_zero_windows(conn: RawConn, args: dict, key: str) -> None:
    """Both ways at once (`size` each), and neither side reads for `delay` seconds: zero windows."""
    size, delay = int(args["size"]), float(args["delay"])
    got = bytearray(conn.take_buffered())
    sender = threading.Thread(target=lambda: (conn.sock.sendall(pattern(size, 2)), conn.sock.shutdown(socket.SHUT_WR)))
    sender.start()
    time.sleep(delay)
    how = _read_all(conn.sock, got)
    sender.join(20)
    _record(conn, key, (how, bytes(got)))


def _record(conn: RawConn, key: str, result) -> None:
    conn.backend.results[key] = result
    conn.backend.event(key).set()


BEHAVIOURS = {
    "/raw/push": lambda conn, args, key: _push(conn, args),
    "/raw/push-rst": _push_then_reset,
    "/raw/sink": _sink,
    "/raw/echo": lambda conn, args, key: _echo_until_the_end(conn),
    "/raw/bye-later": lambda conn, args, key: _bye_while_the_client_is_blocked(conn, key),
    "/raw/duplex": _duplex_with_zero_windows,
}


def _behaviour(conn: RawConn) -> None:
    """101, then the behaviour the path names, with the query as its arguments."""
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    name = head.target.split("?")[0]
    BEHAVIOURS[name](conn, _params(head.target), head.target)


@pytest.fixture(scope="module", params=["native", "python"])
def env(tmp_path_factory, request):
    """The C relay (tunnel.native), and tunnel.tunnel's Python path it must agree with."""
    raw = RawBackend(_behaviour, timeout=20)
    routes = [{"path": "/raw/", "to": raw.ws_url + "/raw/"}]
    environ = {"MPM_SPLICE": "1", "MPM_NATIVE_RELAY": "1" if request.param == "native" else "0"}
    try:
        with running_proxy(tmp_path_factory.mktemp("splice-edges"), routes, environ=environ,
                           mpm={"graceful_timeout": 3}) as proxy:
            yield proxy, raw
    finally:
        raw.close()


def _open(proxy, path: str, rcvbuf: int | None = None, sndbuf: int | None = None, nodelay: bool = False):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", proxy.port))
    sock.sendall(upgrade_request(path))
    head, buf = read_head(sock)
    assert status_of(head) == 101, head
    return sock, buf


# == /proc views of the workers =======================================================================
def _worker_fds(pid: int) -> dict:
    """Counts per kind; `splice_pipes` are 256 KiB pipes and `pipe_bytes` what they hold."""
    kinds = {"socket": 0, "pipe": 0, "other": 0, "splice_pipes": set(), "pipe_bytes": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(path)
        except OSError:
            continue
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
            try:
                probe = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if fcntl.fcntl(probe, fcntl.F_GETPIPE_SZ) == PIPE_SIZE and target not in kinds["splice_pipes"]:
                    kinds["splice_pipes"].add(target)
                    held = array.array("i", [0])
                    fcntl.ioctl(probe, termios.FIONREAD, held)
                    kinds["pipe_bytes"] += held[0]
            finally:
                os.close(probe)
        else:
            kinds["other"] += 1
    kinds["splice_pipes"] = len(kinds["splice_pipes"])
    return kinds


def _workers(proxy) -> list[int]:
    return sorted(proxy.worker_pids())


# == interleaving partial sends ==========================================================================
def test_slow_and_fast_readers_interleave_without_mixing_bytes(env):
    """14 tunnels at once in both directions: slow readers leave leftovers (read out of
    the shared pipe) while fast streams keep splicing through the same pipe; every
    stream arrives complete, in order, exactly once."""
    proxy, raw = env
    errors: list = []
    jobs = []

    def downstream(seed: int, size: int, slow: bool):
        sock, buf = _open(proxy, f"/raw/push?size={size}&seed={seed}", rcvbuf=16 * 1024 if slow else None)
        with sock:
            got = bytearray(buf)
            while True:
                data = sock.recv(8192 if slow else MiB)
                if not data:
                    break
                got += data
                if slow:
                    time.sleep(0.002)
            check_stream(bytes(got), size, seed, f"downstream seed {seed}")

    def upstream(seed: int, size: int):
        path = f"/raw/sink?seed={seed}&pace=0.003&chunk=16384"
        sock, buf = _open(proxy, path, sndbuf=32 * 1024)
        with sock:
            sock.sendall(pattern(size, seed))
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock, buf, limit=20) == b"got %d" % size
        how, got = raw.results[path]
        assert how == "eof"
        check_stream(got, size, seed, f"upstream seed {seed}")

    def run(fn, *args):
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    for seed in range(10, 16):
        jobs.append(threading.Thread(target=run, args=(downstream, seed, 2 * MiB, True)))
    for seed in range(20, 24):
        jobs.append(threading.Thread(target=run, args=(downstream, seed, 24 * MiB, False)))
    for seed in range(30, 34):
        jobs.append(threading.Thread(target=run, args=(upstream, seed, 2 * MiB)))
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(40)
    assert not any(job.is_alive() for job in jobs), "a stream never finished"
    assert not errors, errors


def test_one_byte_writes_mixed_with_megabyte_writes(env):
    """Bursts of 1-byte segments (each its own skb: they fill a pipe's slots long before
    its bytes) between 1 MiB writes, echoed back: every byte once, in order."""
    proxy, _ = env
    sock, buf = _open(proxy, "/raw/echo", nodelay=True)
    stream = pattern(12 * MiB, 40)
    pieces, pos = [], 0
    while pos < len(stream):
        for _ in range(300):
            pieces.append(stream[pos:pos + 1])
            pos += 1
        pieces.append(stream[pos:pos + MiB])
        pos += MiB
    sent_total = sum(len(p) for p in pieces)
    with sock:
        got = bytearray(buf)
        result = {}

        def reader():
            try:
                got.extend(recv_until_eof(sock, limit=20))
                result["ok"] = True
            except OSError as exc:
                result["error"] = exc
        thread = threading.Thread(target=reader)
        thread.start()
        for piece in pieces:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        thread.join(30)
        assert result.get("ok"), result
    assert len(got) == sent_total
    check_stream(bytes(got), sent_total, 40, "echo of 1-byte and 1 MiB writes")


@pytest.mark.parametrize("size", [1, 4096, 300_000, 3 * MiB])
def test_data_and_fin_together_arrive_then_eof(env, size):
    """Data and the FIN in (nearly) one go: the backend gets all of it, then EOF; its
    answer and EOF come back."""
    proxy, raw = env
    path = f"/raw/sink?fin={size}"
    sock, buf = _open(proxy, path)
    with sock:
        payload = pattern(size, 41)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock, buf, limit=10) == b"got %d" % size
    how, got = raw.results[path]
    assert how == "eof"
    check_stream(got, size, 41, "data sent with the FIN")


# == resets =======================================================================================
def test_client_sends_then_resets_at_once(env):
    """Data then an immediate RST: the backend connection ends promptly, and what it got
    is a clean prefix of what was sent (nothing invented, nothing doubled)."""
    proxy, raw = env
    for i in range(10):
        path = f"/raw/sink?rst={i}"
        sock, _ = _open(proxy, path)
        sock.sendall(pattern(200_000 * (i + 1), 42))
        _reset(sock)
        assert raw.event(path).wait(5), f"tunnel {i}: the backend never saw the client go"
        how, got = raw.results[path]
        assert how in ("eof", "reset")
        assert got == pattern(len(got), 42), f"tunnel {i}: the backend got a corrupted prefix"


def test_backend_reset_while_the_client_way_holds_a_leftover(env):
    """The backend pushes at a client that does not read (the proxy holds a leftover
    for the client), then resets: the client's connection ends, no hang."""
    proxy, raw = env
    path = "/raw/push-rst?size=16777216"
    sock, buf = _open(proxy, path, rcvbuf=32 * 1024)
    with sock:
        assert raw.event(path + "#pushed").wait(10)
        got = bytearray(buf)
        sock.settimeout(5)
        ended = time.monotonic()
        try:
            while True:
                data = sock.recv(MiB)
                if not data:
                    break
                got += data
        except ConnectionResetError:
            pass
        assert time.monotonic() - ended < 4.5
    assert got == pattern(len(got), 1)


# == half-close and zero windows ===========================================================================
def test_backend_half_close_while_the_clients_way_is_blocked_on_a_leftover(env):
    """Client -> backend is stuck (the backend is not reading, the proxy holds a leftover
    from the pipe); the backend half-closes: the client still gets "bye" and EOF at once,
    and once the backend reads, every byte the client sent reaches it, then EOF.

    The client sends until its sends stop making progress, then stops: how much that is
    depends on the kernel's socket buffers (loopback autotunes them up to tcp_rmem's and
    tcp_wmem's maxima: 32 and 4 MiB here, so a fixed 16 MiB once went through whole)."""
    proxy, raw = env
    size = 96 * MiB     # more than every buffer on the way can hold (2 x 32 + 4 MiB, and a leftover)
    path = "/raw/bye-later?1"
    sock, buf = _open(proxy, path, sndbuf=64 * 1024)
    with sock:
        payload = pattern(size, 43)
        progress = {"sent": 0, "stop": False}
        error: list = []

        def sender():
            try:
                view = memoryview(payload)
                while progress["sent"] < size and not progress["stop"]:
                    progress["sent"] += sock.send(view[progress["sent"]:progress["sent"] + 65536])
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                error.append(exc)
        thread = threading.Thread(target=sender)
        thread.start()
        # Blocked: the sender stops making progress.
        last = -1
        while progress["sent"] != last:
            last = progress["sent"]
            time.sleep(0.3)
        progress["stop"] = True     # the send under way completes once the backend reads
        assert 0 < progress["sent"] < size
        raw.event(path + "#filled").set()
        assert recv_until_eof(sock, buf, limit=5) == b"bye"
        thread.join(20)
        assert not error, error
        assert raw.event(path).wait(10)
    how, got = raw.results[path]
    assert how == "eof"
    check_stream(got, progress["sent"], 43, "client data after the backend's half-close")


def test_zero_windows_both_ways_then_resume(env):
    """Nobody reads for 3 s while both sides push 8 MiB (both directions hold a
    leftover, both sinks have a zero window); then both read: byte-exact both ways."""
    proxy, raw = env
    size = 8 * MiB
    path = f"/raw/duplex?size={size}&delay=3"
    sock, buf = _open(proxy, path, rcvbuf=32 * 1024)
    with sock:
        error: list = []

        def sender():
            try:
                sock.sendall(pattern(size, 44))
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                error.append(exc)
        thread = threading.Thread(target=sender)
        thread.start()
        time.sleep(3)
        got = bytes(buf) + recv_until_eof(sock, limit=20)
        thread.join(20)
        assert not error, error
    check_stream(got, size, 2, "backend -> client after a zero window")
    assert raw.event(path).wait(10)
    how, up = raw.results[path]
    assert how == "eof"
    check_stream(up, size, 44, "client -> backend after a zero window")


# == many short tunnels: nothing leaks ========================================================================
def test_hundreds_of_short_tunnels_leak_nothing(env):
    """400 tunnels opened and ended quickly (FIN, RST, half-close, mid-stream RST):
    afterwards no tunnel is counted open, each worker holds the same sockets as before,
    at most one splice pipe, and that pipe is empty."""
    proxy, _ = env
    wait_for(lambda: total_tunnels(proxy) == 0, 10, 0.1, "no tunnel open before")
    pids = _workers(proxy)
    before = {pid: _worker_fds(pid) for pid in pids}

    def one(i: int) -> None:
        sock, buf = _open(proxy, f"/raw/echo?short={i}")
        kind = i % 4
        data = pattern(1024 + 97 * i, i)
        sock.sendall(data)
        if kind == 3:
            sock.sendall(pattern(4 * MiB, i))      # still in flight when we reset
            _reset(sock)
            return
        assert recv_exact(sock, len(data), buf) == data
        if kind == 0:
            sock.close()
        elif kind == 1:
            _reset(sock)
        else:
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock, buf, limit=5) == b""
            sock.close()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(400)))
    wait_for(lambda: total_tunnels(proxy) == 0, 10, 0.1, "every short tunnel to be counted closed")
    time.sleep(0.3)
    after = {pid: _worker_fds(pid) for pid in pids}
    for pid in pids:
        b, a = before[pid], after[pid]
        assert a["socket"] == b["socket"], (pid, b, a)
        assert a["other"] == b["other"], (pid, b, a)
        assert a["splice_pipes"] <= 1, (pid, a)
        # A pipe discarded after a send error is reopened on the next splice: 0 or 1 of them.
        assert a["pipe"] - 2 * a["splice_pipes"] == b["pipe"] - 2 * b["splice_pipes"], (pid, b, a)
        assert a["pipe_bytes"] == 0, f"worker {pid}'s splice pipe holds {a['pipe_bytes']} stray bytes"


# == TCP urgent data ======================================================================================
def _cpu(pids) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


@pytest.mark.parametrize("fin", [False, True], ids=["open", "fin"])
@pytest.mark.parametrize("mode", ["splice", "recv"])
def test_urgent_byte_does_not_freeze_or_cut_the_tunnel(tmp_path, mode, fin):
    """A client sends one byte with MSG_OOB (TCP urgent data, e.g. telnet's Synch) in the
    middle of its stream.  Without SO_OOBINLINE that byte is out of band: recv() skips it
    and the in-band bytes behind it flow on.  The tunnel must relay those bytes (and, with
    `fin`, only then the client's EOF), and the worker must not spin meanwhile."""
    raw = RawBackend(_behaviour, timeout=20)
    try:
        with running_proxy(tmp_path / "urgent", [{"path": "/raw/", "to": raw.ws_url + "/raw/"}],
                           environ={"MPM_SPLICE": "1" if mode == "splice" else "0"},
                           mpm={"graceful_timeout": 2}) as proxy:
            path = "/raw/sink?urgent"
            sock, _ = _open(proxy, path, nodelay=True)
            expected = b"before" + b"after" * 1000
            try:
                sock.sendall(b"before")
                time.sleep(0.2)
                sock.send(b"!", socket.MSG_OOB)
                time.sleep(0.2)
                pids = _workers(proxy)
                cpu_before = _cpu(pids)
                sock.sendall(b"after" * 1000)
                if fin:
                    sock.shutdown(socket.SHUT_WR)
                    assert raw.event(path).wait(3), "the backend never saw the client's EOF"
                    how, got = raw.results[path]
                    assert (how, got) == ("eof", expected), \
                        f"the backend got {len(got)} of {len(expected)} bytes ({got[:12]!r}...) then {how}"
                else:
                    time.sleep(1.5)
                    spun = _cpu(pids) - cpu_before
                    assert spun < 0.5, f"the workers burnt {spun:.2f} s of CPU in 1.5 s on one idle tunnel"
                    sock.shutdown(socket.SHUT_WR)
                    assert raw.event(path).wait(3), "the tunnel stalled at the urgent byte"
                    assert raw.results[path] == ("eof", expected)
            finally:
                _reset(sock)
    finally:
        raw.close()


# == reload with leftovers in flight ==========================================================================
@pytest.mark.parametrize("mode", ["splice", "recv"])
def test_reload_hands_over_tunnels_with_leftovers_byte_exact(tmp_path, mode):
    """Streams stalled on slow sinks in both directions (the proxy holds a leftover read
    out of the pipe) when the master is told to reload: the new workers carry on and every
    stream is byte-exact."""
    raw = RawBackend(_behaviour, timeout=20)
    try:
        with running_proxy(tmp_path / "reload", [{"path": "/raw/", "to": raw.ws_url + "/raw/"}],
                           environ={"MPM_SPLICE": "1" if mode == "splice" else "0"},
                           mpm={"graceful_timeout": 10}) as proxy:
            old = proxy.worker_pids()
            size = 6 * MiB
            down = []
            for seed in range(50, 56):
                sock, buf = _open(proxy, f"/raw/push?size={size}&seed={seed}", rcvbuf=32 * 1024)
                down.append((sock, buf, seed))
            up = []
            for seed in range(60, 64):
                path = f"/raw/sink?seed={seed}&delay=4"
                sock, buf = _open(proxy, path, sndbuf=64 * 1024)
                up.append((sock, buf, seed, path))
            errors: list = []

            def push(sock, seed):
                try:
                    sock.sendall(pattern(size, seed))
                    sock.shutdown(socket.SHUT_WR)
                except OSError as exc:
                    errors.append(exc)
            senders = [threading.Thread(target=push, args=(s, seed)) for s, _, seed, _ in up]
            for t in senders:
                t.start()
            time.sleep(1.0)                    # every way is stalled now
            os.kill(proxy.proc.pid, signal.SIGHUP)
            proxy.wait_ready(generation=2)
            wait_for(lambda: "hand-over: passed" in proxy.error_text(), 5, 0.05, "the hand-over")
            time.sleep(0.3)
            # Read on at once (well within the 10 s idle timeout): every stream byte-exact.
            for sock, buf, seed in down:
                with sock:
                    got = bytes(buf) + recv_until_eof(sock, limit=20)
                check_stream(got, size, seed, f"downstream {seed} across the reload")
            for t in senders:
                t.join(20)
            assert not errors, errors
            for sock, buf, seed, path in up:
                with sock:
                    assert recv_until_eof(sock, buf, limit=20) == b"got %d" % size
                how, got = raw.results[path]
                assert how == "eof"
                check_stream(got, size, seed, f"upstream {seed} across the reload")
            # ...and the new generation carried them on: none stayed with the old workers.
            log = proxy.error_text()
            passed = sum(int(n) for n in re.findall(r"hand-over: passed (\d+) tunnels", log))
            assert passed == len(down) + len(up), \
                "tunnels holding a leftover were not handed over: " + \
                "; ".join(line.split("] ", 3)[-1] for line in log.splitlines() if "hand-over" in line)
            wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 10, 0.05,
                     "the old workers to exit")
    finally:
        raw.close()
