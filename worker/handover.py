"""Passing live tunnels and keep-alive connections to another worker process (reload,
recycling, upgrade) without a byte lost.

Every worker listens on an abstract Unix SOCK_SEQPACKET socket named after its pid.
A worker told to stop gracefully, once the scoreboard shows it a successor (a worker
of a newer generation, or the replacement of its own slot when it recycles itself),
connects there and, tunnel by tunnel, stops relaying, sends both sockets (SCM_RIGHTS)
with the bytes it had read but not yet written, the half-close flags, the counters and
the idle deadline, and closes its copies.  The receiver resumes the tunnel with the same
`Tunnel` code, so the peers see a pause and nothing else.

A keep-alive client connection between two requests moves the same way: its socket, the
bytes of its next request already read (a head in part included: the successor parses it
again from the start), its request count and keep-alive deadline.  What the client sends
meanwhile waits in the socket for the successor; nothing is read twice or lost.  A TLS
connection cannot move (its session lives in this process's memory).

Wire format, one item after another on one connection (SEQPACKET keeps the boundaries):
    b"T" + JSON header + b"\\0" + up to CHUNK bytes     a tunnel, with its two fds attached
    b"C" + JSON header + b"\\0" + up to CHUNK bytes     a client connection, with its fd
    b"D" + up to CHUNK bytes                         as often as the bytes need
A tunnel's header names the lengths of both leftovers (to_backend first, then to_client);
a client's the length of the bytes read ahead (`inbuf`).

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
from worker.client import ClientConnection
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
FIRST_RECORD_MAX = RECORD_MAX - 1024   # the kernel's own limit is the buffer less 32 bytes


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
    """One sender's stream of tunnels and connections."""

    def __init__(self, receiver: HandoverReceiver, conn: socket.socket):
        self.receiver = receiver
        self.worker = receiver.worker
        self.conn = conn
        self.pending = None            # (kind, sockets, header, bytearray) while data is due
        self.received = 0              # tunnels
        self.clients = 0               # keep-alive connections
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
        if kind in (b"T", b"C"):
            if len(fds) != (2 if kind == b"T" else 1):
                raise ValueError(f"a {kind!r} record carries {len(fds)} fds")
            header, _, data = message[1:].partition(b"\0")
            socks = [socket.socket(fileno=fd) for fd in fds]
            self.pending = (kind, socks, json.loads(header), bytearray(data))
        elif kind == b"D" and self.pending is not None:
            self.pending[3].extend(message[1:])
        else:
            raise ValueError(f"unexpected record {kind!r}")
        kind, socks, header, data = self.pending
        if len(data) < (header["to_backend"] + header["to_client"] if kind == b"T" else header["inbuf"]):
            return
        self.pending = None
        for sock in socks:
            sock.setblocking(False)
        if kind == b"T":
            self._adopt_tunnel(socks, header, data)
        else:
            client = ClientConnection.adopt(self.worker, socks[0], header["state"], bytes(data))
            self.worker.client_adopted(client)
            self.clients += 1
        self.receiver.pauses.append(time.time() - header["sent_at"])

    def _adopt_tunnel(self, socks: list, header: dict, data: bytearray) -> None:
        split, state = header["to_backend"], header["state"]
        counted = state["bytes_in"] + state["bytes_out"]        # on the member's count by the predecessor
        on_close = self.worker.lb.adopt(header["context"], self.worker.tunnel_closed, counted)   # busy here now
        loop = self.worker.loop
        tunnel = Tunnel(loop, Endpoint(loop, socks[0]), Endpoint(loop, socks[1]), 0.0, on_close,
                        to_backend=bytes(data[:split]), to_client=bytes(data[split:]),
                        context=header["context"], state=header["state"])
        self.received += 1
        self.worker.tunnel_adopted(tunnel)

    def _finish(self) -> None:
        if self.pending is not None:      # the sender died mid-record: that item is lost
            for sock in self.pending[1]:
                sock.close()
            self.pending = None
            self.worker.log_error("error", "hand-over: the predecessor went away in the middle of an item: "
                                           "one connection lost")
        self.worker.loop.remove(self.conn.fileno())
        self.conn.close()
        if self.clients:
            self.worker.log_error("info", f"hand-over: adopted {self.clients} keep-alive connections")
        if self.received:
            pauses = sorted(self.receiver.pauses[-self.received - self.clients:])
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


def _records(kind: bytes, header: dict, data: bytes) -> list[bytes]:
    """An item as records: kind + JSON header + first data, then b"D" + data ...

    The header carries the client's fields for the log line (User-Agent, Referer: up to
    `limits.header_field` each), so it goes as UTF-8, not ASCII-escaped (a latin-1 byte above
    0x7f is 2 bytes, not the 6 of "\\u00e9"), and the first record takes only the data that
    fits beside it: a record over the socket's limit is refused (EMSGSIZE) and its item
    could not move at all."""
    header["sent_at"] = time.time()
    head = kind + json.dumps(header, ensure_ascii=False).encode() + b"\0"
    first = max(0, min(CHUNK, FIRST_RECORD_MAX - len(head)))
    return [head + data[:first]] + [b"D" + data[i:i + CHUNK] for i in range(first, len(data), CHUNK)]


class HandoverSender:
    """A stopping worker's side.  The worker calls `start()` when it begins to stop and
    `offer(item)` for a tunnel opened, or a connection between requests, while it stops;
    the sender calls the worker's `tunnel_moved` / `client_moved` for each item passed, and
    `handover_finished(found)` when it has nothing more to do."""

    def __init__(self, worker):
        self.worker = worker
        self.loop = worker.loop
        self.sock: socket.socket | None = None
        self.queue: collections.deque = collections.deque()     # tunnels and connections to send
        self.outgoing: collections.deque = collections.deque()  # the rest of a sent item's records
        self.moved = 0
        self.looking_since = 0.0
        self.takes_connections = False      # a successor is connected, or expected
        self.reported = False

    def start(self) -> bool:
        """Look for the successor; False when none is to be expected (the server stops)."""
        if not self._expected():
            return False
        self.takes_connections = True
        self.looking_since = self.loop.now
        self._find()
        return True

    def offer(self, item) -> None:
        if self.sock is not None and item.movable:
            self.queue.append(item)
            self._want_writable()
        # while still looking, `_find` collects every movable item once it connects

    def _expected(self) -> bool:
        """A newer worker exists (in any state), or our slot is being recycled: the master
        starts its replacement within a tick."""
        worker = self.worker
        return worker.recycling or any(
            row["pid"] and (row["generation"] > worker.generation or (
                row["generation"] == worker.generation and row["slot"] == worker.slot
                and row["started"] > worker.started_wall)) for row in worker.peers())

    def _successors(self) -> list[int]:
        """Workers that took over from us and serve: a newer generation, or our slot's
        replacement (recycling); our own slot's first."""
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

    def _movable(self) -> list:
        worker = self.worker
        return [item for items in (worker.tunnel_set, worker.clients) for item in items if item.movable]

    def _find(self) -> None:
        worker = self.worker
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
                self.takes_connections = False
                worker.log_error("info", f"no successor to hand {len(worker.tunnel_set)} tunnels and "
                                         f"{len(worker.clients)} connections to: they stay here until they "
                                         "close or graceful_timeout (idle ones are closed)")
                worker.handover_finished(False)
            return
        self.sock = sock
        self.queue.extend(self._movable())
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
                item = self.queue.popleft()
                if not item.movable:
                    continue
                if not self._send_item(item) or not self._send_outgoing():
                    return
        except OSError as exc:
            self._fail(f"the successor stopped taking connections: {exc.strerror or exc}")
            return
        self.loop.remove(self.sock.fileno())
        self._report()

    def _send_item(self, item) -> bool:
        """Detach and send the first record; False when the successor's queue is full (the
        item carries on here and goes next time).  Raises OSError when the successor failed
        (the item carries on here)."""
        if isinstance(item, Tunnel):
            state = item.detach()
            client, backend = item.client, item.backend
            to_backend, to_client = backend.out or b"", client.out or b""
            fds = [client.fd, backend.fd]
            records = _records(b"T", {"state": state, "context": item.context, "to_backend": len(to_backend),
                                      "to_client": len(to_client)}, to_backend + to_client)
        else:
            state = item.detach()
            fds = [item.ep.fd]
            records = _records(b"C", {"state": state, "inbuf": len(item.inbuf)}, bytes(item.inbuf))
        try:
            socket.send_fds(self.sock, [records[0]], fds)
        except BlockingIOError:
            item.reattach()
            self.queue.appendleft(item)
            return False
        except OSError as exc:
            item.reattach()
            if exc.errno == errno.EMSGSIZE:
                return True             # a record too big for the socket: this one stays here
            raise
        self.outgoing.extend(records[1:])
        self.moved += 1
        if isinstance(item, Tunnel):
            item.client.close()         # the successor holds the sockets now
            item.backend.close()
            self.worker.tunnel_moved(item)
        else:
            item.handed_over()          # no longer movable: it may still be queued a second time
            item.ep.close()
            self.worker.client_moved(item)
        return True

    def _send_outgoing(self) -> bool:
        """The rest of the last item's records; False while the socket is full.  A failure
        here loses that item (its sockets are already the successor's)."""
        while self.outgoing:
            try:
                self.sock.send(self.outgoing[0])
            except BlockingIOError:
                return False
            except OSError as exc:
                self.outgoing.clear()
                self.worker.log_error("error", f"hand-over: one item was lost mid-record: {exc.strerror or exc}")
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
        """Said once, when the first batch is out; later ones (connections that finish
        their exchange while we stop) only at debug level."""
        worker = self.worker
        level = "debug" if self.reported else "info"
        self.reported = True
        worker.log_error(level, f"hand-over: passed {self.moved} tunnels and connections to the successor; "
                                 f"{len(worker.tunnel_set)} tunnels and {len(worker.clients)} connections "
                                 "stay here (TLS, or in the middle of an exchange)")
        worker.handover_finished(True)

    def close(self) -> None:
        if self.sock is not None:
            self.loop.remove(self.sock.fileno())
            self.sock.close()
            self.sock = None
