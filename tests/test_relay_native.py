"""The C relay of plain tunnels (tunnel/_relay.c) on its own, between real connected TCP sockets
on loopback: what it hands back to Python (counts, the time of the last traffic, leftovers and
EOFs on removal, why a tunnel ended) is what tunnel.native builds the log line, the idle timeout
and a hand-over on.  The proxy-level behaviour, through both this relay and the Python path it
must agree with, is tests/test_tunnel_splice_edges.py's and tests/test_upgrade_lifecycle.py's."""

from __future__ import annotations

import importlib
import select
import shutil
import socket
import struct
import sysconfig
import time
from pathlib import Path

import pytest

try:
    _relay = importlib.import_module("tunnel._relay")
except ImportError:
    # Where pip had a C compiler and Python's headers, it built the relay: its absence is then a
    # broken build, not a machine without one (where tunnel.tunnel's Python path serves alone).
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if shutil.which("gcc") and headers:
        raise
    pytest.skip("no C compiler or Python headers here: the C relay is not built", allow_module_level=True)


def _pair(small: bool = False) -> tuple[socket.socket, socket.socket]:
    """(our end, the peer's end) of a loopback TCP connection; ours non-blocking, as the worker's.
    `small`: 4 KiB buffers both ways (set before the connection, so the window is small too)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.socket()
        if small:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.settimeout(5)
        peer.connect(server.getsockname())
        ours, _ = server.accept()
        if small:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    return ours, peer


class _Loop:
    """What a turn of the relay needs of worker.loop's EventLoop: the epoll its sockets join,
    `now`, the handlers of what is not the relay's, and where a failing close is contained
    (worker.faults in a worker)."""

    def __init__(self):
        self.epoll = select.epoll()
        self.relay = _relay.Relay(self.epoll.fileno())
        self.now = 0.0
        self.handlers: dict = {}
        self.contained: list = []

    def turn(self, timeout: float = 0.05) -> int:
        return self.relay.turn(self, self.handlers, timeout)

    def contain(self, exc, callback, fd) -> None:
        self.contained.append((str(exc), callback.__self__))


class _Owner:
    """Stands for a NativeTunnel: `close(reason)` is all a turn calls, when its tunnel ended."""

    def __init__(self, ended: list, fail: bool = False):
        self.ended, self.fail = ended, fail

    def close(self, reason: str) -> None:
        self.ended.append((self, reason))
        if self.fail:
            raise RuntimeError("injected fault: close")


class Rig:
    """A relay between a client's connection and a backend's; `client` and `backend` are the
    far ends a test plays; `ended` what the turns closed, (key, reason)."""

    def __init__(self, to_client: bytes = b"", to_backend: bytes = b"", slow_client: bool = False,
                 loop: _Loop | None = None, fail: bool = False):
        self.loop = loop if loop is not None else _Loop()
        self.relay = self.loop.relay
        self.client_end, self.client = _pair(small=slow_client)
        self.backend_end, self.backend = _pair()
        self.ended: list = []
        self.key = _Owner(self.ended, fail)
        self.slot = self.relay.add(self.key, self.client_end.fileno(), self.backend_end.fileno(), False, False,
                                   to_client, to_backend, time.monotonic())

    def pump(self, until, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out"
            self.loop.turn()

    def read(self, sock: socket.socket, size: int) -> bytes:
        """`size` bytes from a far end, relaying meanwhile."""
        data = bytearray()
        self.pump(lambda: data.extend(_nowait(sock)) or len(data) >= size)
        return bytes(data)

    def at_eof(self, sock: socket.socket) -> bool:
        seen = []
        self.pump(lambda: _eof(sock, seen))
        return True

    def close(self) -> None:
        for sock in (self.client_end, self.client, self.backend_end, self.backend):
            sock.close()


def _eof(sock: socket.socket, seen: list) -> bool:
    sock.setblocking(False)
    try:
        data = sock.recv(1)
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)
    assert data == b"", data
    return True


@pytest.mark.timeout(30)
def test_bytes_cross_both_ways_counted_and_timed():
    rig = Rig(to_client=b"early for the client")
    try:
        before = rig.relay.last_active(rig.slot)
        assert rig.read(rig.client, 20) == b"early for the client"   # what the relay held, sent first
        rig.client.sendall(b"ping" * 100)
        assert rig.read(rig.backend, 400) == b"ping" * 100
        rig.backend.sendall(b"x" * 200_000)                             # a full read: the rest spliced
        assert rig.read(rig.client, 200_000) == b"x" * 200_000
        assert rig.relay.counts(rig.slot) == (400, 200_000)
        assert rig.relay.last_active(rig.slot) > before
        assert rig.ended == []
    finally:
        rig.close()


def _nowait(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


@pytest.mark.timeout(30)
def test_a_slow_sink_keeps_one_leftover_and_removal_gives_it_back():
    rig = Rig(slow_client=True)
    try:
        payload = bytes(range(256)) * 4096                              # 1 MiB the client does not read
        rig.backend.setblocking(False)
        sent = moved = 0
        stalled_since = time.monotonic()
        while time.monotonic() - stalled_since < 0.5:                  # until the relay stops reading
            try:
                sent += rig.backend.send(payload[sent:sent + 65536])
            except BlockingIOError:
                pass
            rig.loop.turn(0.02)
            if rig.relay.counts(rig.slot)[1] != moved:
                moved, stalled_since = rig.relay.counts(rig.slot)[1], time.monotonic()
        to_client, to_backend, client_eof, backend_eof, bytes_in, bytes_out = rig.relay.remove(rig.slot)
        assert (to_backend, client_eof, backend_eof, bytes_in, bytes_out) == (b"", 0, 0, 0, moved)
        assert 0 < len(to_client) <= 256 * 1024                         # one read's worth, no more
        # What reached the client, then the leftover, is the stream as the backend sent it.
        delivered = bytearray()
        while chunk := _nowait(rig.client):
            delivered += chunk
        assert bytes(delivered) + to_client == payload[:moved]
        assert rig.ended == []
    finally:
        rig.close()


@pytest.mark.timeout(30)
def test_eof_is_passed_on_and_both_eofs_end_it_closed():
    rig = Rig()
    try:
        rig.client.sendall(b"last words")
        rig.client.shutdown(socket.SHUT_WR)
        assert rig.read(rig.backend, 10) == b"last words"
        assert rig.at_eof(rig.backend)                                  # the half-close reached it
        rig.backend.sendall(b"answer")
        assert rig.read(rig.client, 6) == b"answer"                     # the other way still flows
        rig.backend.shutdown(socket.SHUT_WR)
        rig.pump(lambda: rig.ended)
        assert rig.ended == [(rig.key, "closed")]
        assert rig.relay.remove(rig.slot)[2:4] == (1, 1)
    finally:
        rig.close()


@pytest.mark.timeout(30)
def test_a_reset_ends_it_with_the_reason_and_the_slot_is_reused():
    rig = Rig()
    try:
        rig.backend.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rig.backend.close()                                             # RST
        rig.pump(lambda: rig.ended)
        (key, reason), = rig.ended
        assert key is rig.key and reason in ("reset", "recv failed: Connection reset by peer"), reason
        slot = rig.slot
        rig.relay.remove(slot)
        with pytest.raises(KeyError):
            rig.relay.counts(slot)
        other_end, other = _pair()
        try:
            assert rig.relay.add(object(), other_end.fileno(), rig.client_end.fileno(), False, False, b"", b"",
                                 time.monotonic()) == slot
        finally:
            other_end.close()
            other.close()
    finally:
        rig.close()


@pytest.mark.timeout(30)
def test_a_tunnel_keeps_its_idle_clock_when_it_comes_to_the_relay():
    """A tunnel handed over from another process (or back from a hand-over that failed) had
    been idle a while: its clock goes on from its last traffic, not from now (review
    2026-12-04-relay #2: a tunnel reloaded more often than its timeout never timed out)."""
    loop = _Loop()          # (its epoll lives as long as it does)
    relay = loop.relay
    ours, peer = socket.socketpair()
    other_ours, other_peer = socket.socketpair()
    try:
        idle_since = time.monotonic() - 2.5
        slot = relay.add(object(), ours.fileno(), other_ours.fileno(), False, False, b"", b"", idle_since)
        assert relay.last_active(slot) == idle_since
        relay.remove(slot)
    finally:
        for sock in (ours, peer, other_ours, other_peer):
            sock.close()


@pytest.mark.timeout(30)
def test_python_run_while_a_tunnel_is_removed_may_add_tunnels():
    """Removing a tunnel releases its key, whose release may run Python (a __del__) that adds
    tunnels and grows the relay's table: the removal must hold no pointer into the table by
    then (review 2026-12-04-relay #1: valgrind saw reads of freed memory)."""
    loop = _Loop()
    relay = loop.relay
    made: list = []

    class Key:
        def __del__(self):
            for _ in range(130):          # past the table's first 64 slots: it is reallocated
                client_end, client = socket.socketpair()
                backend_end, backend = socket.socketpair()
                made.append((client_end, client, backend_end, backend))
                relay.add(object(), client_end.fileno(), backend_end.fileno(), False, False, b"", b"",
                          time.monotonic())

    ours, peer = socket.socketpair()
    other_ours, other_peer = socket.socketpair()
    try:
        slot = relay.add(Key(), ours.fileno(), other_ours.fileno(), False, False, b"left for the client",
                         b"left for the backend", time.monotonic())
        state = relay.remove(slot)
        assert state[:2] == (b"left for the client", b"left for the backend")
        assert len(made) == 130
        # A tunnel added meanwhile relays.
        client_end, client, backend_end, backend = made[-1]
        client.sendall(b"ping")
        backend.setblocking(False)
        got = bytearray()
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            loop.turn()
            got += _nowait(backend)
        assert bytes(got) == b"ping"
    finally:
        for socks in made + [(ours, peer, other_ours, other_peer)]:
            for sock in socks:
                sock.close()


@pytest.mark.timeout(30)
def test_a_close_that_raises_is_contained_and_the_other_ends_are_still_closed():
    loop = _Loop()
    failing, fine = Rig(loop=loop, fail=True), Rig(loop=loop)
    try:
        for rig in (failing, fine):         # both sides shut: each tunnel ends "closed"
            rig.client.shutdown(socket.SHUT_WR)
            rig.backend.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 5
        while not (failing.ended and fine.ended) and time.monotonic() < deadline:
            loop.turn()
        assert (failing.ended, fine.ended) == ([(failing.key, "closed")], [(fine.key, "closed")])
        assert loop.contained == [("injected fault: close", failing.key)]
    finally:
        for rig in (failing, fine):
            rig.close()


@pytest.mark.timeout(30)
def test_a_turn_hands_other_events_to_their_handlers_and_contains_their_faults():
    """The loop's turn in C (tunnel/_relay_turn.c) dispatches what is not a tunnel's as
    worker.loop's Python turn does: handlers[fd](mask) with `now` already set, an exception to
    `contain(exc, handler, fd)`, and the turn goes on to the next event."""
    loop = _Loop()
    rig = Rig(loop=loop)
    calls: list = []

    def failing(mask):
        calls.append(("failing", mask, loop.now))
        raise ValueError("injected fault: handler")

    failing.__self__ = "the failing handler"        # what _Loop.contain records of a callback
    readable, peer = socket.socketpair()
    other, other_peer = socket.socketpair()
    try:
        for sock, handler in ((readable, failing), (other, lambda mask: calls.append(("fine", mask, loop.now)))):
            loop.epoll.register(sock.fileno(), select.EPOLLIN)
            loop.handlers[sock.fileno()] = handler
        peer.sendall(b"x")
        other_peer.sendall(b"y")
        rig.client.sendall(b"ping")
        before = time.monotonic()
        deadline = before + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            loop.turn()
        assert sorted(name for name, _, _ in calls) == ["failing", "fine"]
        assert all(mask == select.EPOLLIN and now >= before for _, mask, now in calls), calls
        assert loop.contained == [("injected fault: handler", "the failing handler")]
        assert rig.read(rig.backend, 4) == b"ping"         # the tunnel's event, relayed in the same turns
        del loop.handlers[other.fileno()]                  # an fd without a handler is passed over
        other_peer.sendall(b"z")
        assert loop.turn(0.0) >= 1 and len(calls) == 3      # (only `failing`'s fd is still readable)
    finally:
        for sock in (readable, peer, other, other_peer):
            sock.close()
        rig.close()


@pytest.mark.timeout(30)
def test_a_turn_that_only_relays_waits_on_until_python_has_something_to_do():
    """Tunnels' events alone do not end a turn: Python's part of a turn (timers, the sweep, log
    sinks) runs when its timeout is up, or at once when a Python handler's event comes."""
    loop = _Loop()
    rig = Rig(loop=loop)
    readable, peer = socket.socketpair()
    try:
        rig.client.sendall(b"ping")
        started = time.monotonic()
        assert loop.turn(0.4) == 0                      # relayed, then waited out its time: an idle last wait
        assert time.monotonic() - started >= 0.35
        assert loop.now >= started + 0.35                # `now` as of the turn's end
        assert _nowait(rig.backend) == b"ping"
        loop.epoll.register(readable.fileno(), select.EPOLLIN)
        loop.handlers[readable.fileno()] = lambda mask: None
        peer.sendall(b"x")
        started = time.monotonic()
        assert loop.turn(5.0) == 1                       # a Python handler's event ends it at once
        assert time.monotonic() - started < 1.0
    finally:
        for sock in (readable, peer):
            sock.close()
        rig.close()


@pytest.mark.timeout(30)
def test_a_slot_given_to_a_new_tunnel_mid_turn_takes_none_of_the_old_ones_events():
    """A handler frees a tunnel's slot and a new tunnel takes it, while the old tunnel's reset
    waits later in the same batch: the reset is not the new tunnel's (review 2026-12-05-turn
    F1: it ended an untouched, paused tunnel with "reset")."""
    loop = _Loop()
    relay, ended = loop.relay, []
    old = Rig(loop=loop)
    new_client_end, new_client = _pair()
    new_backend_end, new_backend = _pair(small=True)
    trigger, trigger_peer = socket.socketpair()
    slots = {}

    def handler(mask):      # stands for a hand-over that sends `old` on, then a 101 for `new`
        trigger.recv(10)
        relay.remove(old.slot)
        slots["new"] = relay.add(_Owner(ended), new_client_end.fileno(), new_backend_end.fileno(), False, False,
                                 b"", b"L" * 4_000_000, time.monotonic())   # paused: its backend is slow

    try:
        loop.epoll.register(trigger.fileno(), select.EPOLLIN)
        loop.handlers[trigger.fileno()] = handler
        trigger_peer.send(b"x")                         # ready first: first in the batch
        time.sleep(0.01)
        old.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        old.client.close()                              # RST: the old tunnel's event, later in the batch
        time.sleep(0.05)
        assert loop.turn(0.0) == 2
        assert slots["new"] == old.slot
        for _ in range(3):
            loop.turn(0.05)
        assert ended == [] and old.ended == []
        assert relay.counts(slots["new"]) == (0, 0)
    finally:
        for sock in (new_client_end, new_client, new_backend_end, new_backend, trigger, trigger_peer):
            sock.close()
        old.close()


@pytest.mark.timeout(30)
def test_a_tunnel_that_ended_mid_turn_is_closed_before_the_next_handler_runs():
    """A tunnel's end is reported before Python runs next in the turn: a hand-over that sends
    tunnels on must not find it open (review 2026-12-05-turn F2: it went to the next generation
    with both sides at EOF, and its client waited the idle timeout for our FIN)."""
    loop = _Loop()
    rig = Rig(loop=loop)
    trigger, trigger_peer = socket.socketpair()
    seen = []
    try:
        rig.client.shutdown(socket.SHUT_WR)
        assert rig.at_eof(rig.backend)
        loop.epoll.register(trigger.fileno(), select.EPOLLIN)
        loop.handlers[trigger.fileno()] = lambda mask: seen.append(list(rig.ended)) or trigger.recv(10)
        rig.backend.shutdown(socket.SHUT_WR)            # the tunnel ends "closed"...
        time.sleep(0.02)
        trigger_peer.send(b"x")                         # ...and a handler's event comes in the same batch
        time.sleep(0.02)
        assert loop.turn(0.0) == 2
        assert seen == [[(rig.key, "closed")]]
    finally:
        for sock in (trigger, trigger_peer):
            sock.close()
        rig.close()


@pytest.mark.timeout(30)
def test_a_detached_tunnel_takes_the_time_its_last_traffic_left_it(monkeypatch):
    """With the C relay a tunnel's deadline is pushed only when it comes due (the sweep asks the
    relay), so a hand-over between its coming due and the sweep computed no time left from it,
    and the next generation closed a busy tunnel at once (clean-clone CI: 246 of 1,000 streaming
    tunnels after ten reloads).  Detaching takes the relay's clock."""
    from tunnel import tunnel as relaying
    from tunnel.endpoint import Endpoint
    from worker.loop import EventLoop

    monkeypatch.setattr(relaying, "NATIVE", True)      # (also when the suite runs MPM_NATIVE_RELAY=0)
    loop = EventLoop()
    client_end, client = _pair()
    backend_end, backend = _pair()
    try:
        tunnel = relaying.Tunnel(loop, Endpoint(loop, client_end), Endpoint(loop, backend_end), 1.0, lambda t, why: None,
                        context={})
        assert tunnel.__class__.__name__ == "NativeTunnel"
        client.sendall(b"traffic")
        deadline = time.monotonic() + 5
        got = b""
        while len(got) < 7 and time.monotonic() < deadline:
            loop.relay.turn(loop, loop.handlers, 0.05)
            got += _nowait(backend)
        assert got == b"traffic"
        loop.now = time.monotonic()
        tunnel.deadline = loop.now - 0.1           # come due a moment ago; the sweep has not run
        state = tunnel.detach()
        assert state["idle_left"] > 0.8, state
    finally:
        for sock in (client_end, client, backend_end, backend):
            sock.close()
        loop.close()
