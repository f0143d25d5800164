"""Passing live tunnels to another worker process (reload, recycling) without a byte lost.

Every worker listens on an abstract Unix SOCK_SEQPACKET socket named after its pid.
A worker told to stop gracefully, once the scoreboard shows it a successor (a worker
of a newer generation, or the replacement of its own slot when it recycles itself),
connects there and, tunnel by tunnel, stops relaying, sends both sockets (SCM_RIGHTS)
with the bytes it had read but not yet written, the half-close flags, the counters and
the idle deadline, and closes its copies.  The receiver resumes the tunnel with the same
`Tunnel` code, so the peers see a pause and nothing else.

Wire format, one tunnel after another on one connection (SEQPACKET keeps the boundaries):
    b"T" + JSON header + b"\\0" + up to CHUNK bytes     with the two fds attached
    b"D" + up to CHUNK bytes                         as often as the leftovers need
The header names the lengths of both leftovers (to_backend first, then to_client).

A tunnel is handed over once its fds are sent: if the receiver dies with them in
flight, that tunnel is lost (and only that); the sender logs how many it passed.

Both halves live here: `HandoverReceiver` (every worker, from its start) and
`HandoverSender` (a worker that stops with tunnels).  Neither ever blocks its loop: the
sender writes records only when the socket is writable and keeps the rest of a tunnel's
records for the next time; a tunnel the successor cannot take yet (its queue is full)
relays on here meanwhile (`Tunnel.reattach`).  If the successor dies, the sender looks for
another (a respawned replacement) while the stop lasts.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import socket
import time

from tunnel.endpoint import Endpoint
from tunnel.tunnel import Tunnel
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT

CHUNK = 16 * 1024            # leftover bytes per record: with the header, well under a record's limit
CONNECT_PATIENCE = 3.0       # how long to look for a successor that is still starting
RETRY = 0.05                 # seconds between looks for a successor
# Records in flight are tunnels paused: a small send buffer keeps the queue at the receiver
# short (about 50 records), and the sender's other tunnels relay on while it waits.
SEND_BUFFER = 32 * 1024
# The kernel doubles SO_SNDBUF, and a SEQPACKET record larger than the sender's buffer is
# refused (EMSGSIZE): no record is longer than this, so the receiver never truncates one.
RECORD_MAX = 2 * SEND_BUFFER


def address(pid: int) -> bytes:
    return f"\0mpm-handover-{pid}".encode()


class HandoverReceiver:
    """The listening end, registered in the worker's loop."""

    def __init__(self, worker):
        self.worker = worker
        self.loop = worker.loop
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.bind(address(os.getpid()))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.loop.add(self.sock.fileno(), EPOLLIN, self._accept)
        self.pauses: list[float] = []       # seconds from detach to resume, per tunnel

    def _accept(self, mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        _Inbound(self, conn)

    def close(self) -> None:
        self.loop.remove(self.sock.fileno())
        self.sock.close()


class _Inbound:
    """One sender's stream of tunnels."""

    def __init__(self, receiver: HandoverReceiver, conn: socket.socket):
        self.receiver = receiver
        self.worker = receiver.worker
        self.conn = conn
        self.pending = None            # (client, backend, header, bytearray) while data is due
        self.received = 0
        receiver.loop.add(conn.fileno(), EPOLLIN, self._on_event)

    def _on_event(self, mask: int) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.conn, RECORD_MAX, 2)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message:
                self._finish()
                return
            try:
                self._record(message, fds)
            except (ValueError, KeyError) as exc:
                for fd in fds:
                    os.close(fd)
                self.worker.log_error("error", f"hand-over: bad record ({exc}); dropping the stream")
                self._finish()
                return

    def _record(self, message: bytes, fds: list[int]) -> None:
        kind = message[:1]
        if kind == b"T":
            if len(fds) != 2:
                raise ValueError(f"a tunnel record carries {len(fds)} fds")
            header, _, data = message[1:].partition(b"\0")
            client = socket.socket(fileno=fds[0])
            backend = socket.socket(fileno=fds[1])
            self.pending = (client, backend, json.loads(header), bytearray(data))
        elif kind == b"D" and self.pending is not None:
            self.pending[3].extend(message[1:])
        else:
            raise ValueError(f"unexpected record {kind!r}")
        client, backend, header, data = self.pending
        if len(data) < header["to_backend"] + header["to_client"]:
            return
        self.pending = None
        split = header["to_backend"]
        client.setblocking(False)
        backend.setblocking(False)
        on_close = self.worker.lb.adopt(header["context"], self.worker.tunnel_closed)   # counted busy here now
        loop = self.worker.loop
        tunnel = Tunnel(loop, Endpoint(loop, client), Endpoint(loop, backend), 0.0, on_close,
                        to_backend=bytes(data[:split]), to_client=bytes(data[split:]),
                        context=header["context"], state=header["state"])
        self.received += 1
        self.receiver.pauses.append(time.time() - header["sent_at"])
        self.worker.tunnel_adopted(tunnel)

    def _finish(self) -> None:
        if self.pending is not None:      # the sender died mid-record: that tunnel is lost
            for sock in self.pending[:2]:
                sock.close()
            self.pending = None
        self.worker.loop.remove(self.conn.fileno())
        self.conn.close()
        if self.received:
            pauses = sorted(self.receiver.pauses[-self.received:])
            self.worker.log_error("info", f"hand-over: adopted {self.received} tunnels; pause p50 "
                                          f"{_ms(pauses, 0.5)} p99 {_ms(pauses, 0.99)} max {_ms(pauses, 1.0)}")


def _ms(values: list[float], q: float) -> str:
    return f"{values[min(int(q * len(values)), len(values) - 1)] * 1000:.1f}ms" if values else "-"


def connect_successor(pids: list[int]) -> socket.socket | None:
    """A connection to the first successor that answers (a listening Unix socket answers
    at once, or says EAGAIN when its backlog is full: then the next is tried)."""
    for pid in pids:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        try:
            sock.connect(address(pid))
            return sock
        except OSError:
            sock.close()
    return None


def tunnel_records(tunnel: Tunnel, state: dict) -> list[bytes]:
    """A detached tunnel as records: b"T" + header + first data, then b"D" + data ..."""
    client, backend = tunnel.client, tunnel.backend
    to_backend, to_client = backend.out or b"", client.out or b""
    header = json.dumps({"state": state, "context": tunnel.context, "to_backend": len(to_backend),
                         "to_client": len(to_client), "sent_at": time.time()}).encode()
    data = to_backend + to_client
    return [b"T" + header + b"\0" + data[:CHUNK]] + [b"D" + data[i:i + CHUNK] for i in range(CHUNK, len(data), CHUNK)]


class HandoverSender:
    """A stopping worker's side.  The worker tells it `start()` (with tunnels to move) and
    `offer(tunnel)` (one opened while stopping); it tells the worker `tunnel_moved(tunnel)`
    for each one passed and `handover_finished()` when it has nothing more to do."""

    def __init__(self, worker):
        self.worker = worker
        self.loop = worker.loop
        self.sock: socket.socket | None = None
        self.queue: collections.deque = collections.deque()     # tunnels to send
        self.outgoing: collections.deque = collections.deque()  # the rest of a sent tunnel's records
        self.moved = 0
        self.looking_since = 0.0

    def start(self) -> None:
        self.looking_since = self.loop.now
        self._find()

    def offer(self, tunnel: Tunnel) -> None:
        if self.sock is not None and tunnel.movable:
            self.queue.append(tunnel)
            self._want_writable()

    def _successors(self) -> list[int]:
        """Workers that took over from us: a newer generation, or our slot's replacement
        (recycling); our own slot's first.  Empty when the whole server is stopping."""
        worker, me = self.worker, os.getpid()
        found = []
        for row in worker.peers():
            if row["pid"] in (0, me) or row["state"] not in ("ready", "full"):
                continue
            newer = row["generation"] > worker.generation or (
                row["generation"] == worker.generation and row["slot"] == worker.slot
                and row["started"] > worker.started_wall)
            if newer:
                found.append((row["slot"] != worker.slot, -row["generation"], row["pid"]))
        return [pid for *_, pid in sorted(found)]

    def _find(self) -> None:
        worker = self.worker
        if not worker.tunnel_set:
            worker.handover_finished()
            return
        waited = self.loop.now - self.looking_since
        pids = self._successors()
        same_slot = any(row["pid"] in pids and row["slot"] == worker.slot for row in worker.peers())
        if pids and not same_slot and waited < 1.0:
            pids = []      # our slot's successor is probably still starting: give it a second
        sock = connect_successor(pids) if pids else None
        if sock is None:
            if waited < CONNECT_PATIENCE:
                self.loop.call_later(RETRY, self._find)
            else:
                worker.log_error("info", f"no successor to hand {len(worker.tunnel_set)} tunnels to: "
                                         "they stay here until they close or graceful_timeout")
                worker.handover_finished()
            return
        self.sock = sock
        self.queue.extend(tunnel for tunnel in worker.tunnel_set if tunnel.movable)
        self._want_writable()

    def _want_writable(self) -> None:
        if self.sock is not None and self.sock.fileno() not in self.loop.handlers:
            self.loop.add(self.sock.fileno(), EPOLLOUT, self._on_writable)

    def _on_writable(self, mask: int) -> None:
        if mask & (EPOLLERR | EPOLLHUP):
            self._fail("the successor went away")
            return
        try:
            if not self._send_outgoing():
                return
            while self.queue:
                tunnel = self.queue.popleft()
                if tunnel.closed:
                    continue
                if not self._send_tunnel(tunnel) or not self._send_outgoing():
                    return
        except OSError as exc:
            self._fail(f"the successor stopped taking tunnels: {exc.strerror or exc}")
            return
        self.loop.remove(self.sock.fileno())
        self._report()

    def _send_tunnel(self, tunnel: Tunnel) -> bool:
        """Detach and send the first record; False when the successor's queue is full (the
        tunnel relays on here and goes next time).  Raises OSError when the successor failed
        (the tunnel relays on here)."""
        state = tunnel.detach()
        records = tunnel_records(tunnel, state)
        try:
            socket.send_fds(self.sock, [records[0]], [tunnel.client.fd, tunnel.backend.fd])
        except BlockingIOError:
            tunnel.reattach()
            self.queue.appendleft(tunnel)
            return False
        except OSError as exc:
            tunnel.reattach()
            if exc.errno == errno.EMSGSIZE:
                return True             # a record too big for the socket: this one stays here
            raise
        tunnel.client.close()           # the successor holds the sockets now
        tunnel.backend.close()
        self.outgoing.extend(records[1:])
        self.moved += 1
        self.worker.tunnel_moved(tunnel)
        return True

    def _send_outgoing(self) -> bool:
        """The rest of the last tunnel's records; False while the socket is full.  A failure
        here loses that tunnel (its sockets are already the successor's)."""
        while self.outgoing:
            try:
                self.sock.send(self.outgoing[0])
            except BlockingIOError:
                return False
            except OSError as exc:
                self.outgoing.clear()
                self.worker.log_error("error", f"hand-over: a tunnel was lost mid-record: {exc.strerror or exc}")
                raise
            self.outgoing.popleft()
        return True

    def _fail(self, why: str) -> None:
        """The successor is gone or refuses: what was not passed stays here; look for another."""
        self.worker.log_error("error", f"hand-over: {why}; looking for another successor")
        self.loop.remove(self.sock.fileno())
        self.sock.close()
        self.sock = None
        self.queue.clear()
        self.outgoing.clear()
        self.looking_since = self.loop.now
        self.loop.call_later(RETRY, self._find)

    def _report(self) -> None:
        self.worker.log_error("info", f"hand-over: passed {self.moved} tunnels to the successor; "
                                      f"{len(self.worker.tunnel_set)} stay here (TLS or not passed)")
        self.worker.handover_finished()

    def close(self) -> None:
        if self.sock is not None:
            self.loop.remove(self.sock.fileno())
            self.sock.close()
            self.sock = None
