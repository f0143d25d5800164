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
a client's the length of the bytes read ahead (`inbuf`).  The receiver answers on the same
connection: b"H" once, as it accepts it, then for each T or C record b"A" (its fds are
ours now) or b"R" (refused: out of file descriptors, the kernel installed what fitted and
dropped the rest).  Until that answer the sender keeps its copies of the sockets and the
item paused; a refused item (or every unanswered one, if the receiver dies) relays on in
the sender.  A sender that hears no b"H" (a receiver of a release before the answers)
closes its copies once they are sent, as before.

An item is the successor's once it answered b"A": if the successor dies after that with
the item's data in flight, that item is lost (and only that); the sender logs how many
it passed.

Two halves: `HandoverReceiver` here (every worker, from its start) and
`worker.handsend.HandoverSender` (a worker that stops with tunnels).  Neither ever blocks its loop: the
sender writes records only when the socket is writable and keeps the rest of a tunnel's
records for the next time; a tunnel the successor cannot take yet (its queue is full)
relays on here meanwhile (`Tunnel.reattach`).  If the successor dies, the sender looks for
another (a respawned replacement) while the stop lasts.
"""

from __future__ import annotations

import json
import os
import socket
import time

from tunnel.endpoint import Endpoint
from tunnel.tunnel import Tunnel
from worker.client import ClientConnection
from worker.clientmove import listened_on
from worker.loop import EPOLLIN

CHUNK = 16 * 1024            # leftover bytes per record: with the header, well under a record's limit
# Records in flight are tunnels paused: a small send buffer keeps the queue at the receiver
# short (about 50 records), and the sender's other tunnels relay on while it waits.
SEND_BUFFER = 32 * 1024
# The kernel doubles SO_SNDBUF, and a SEQPACKET record larger than the sender's buffer is
# refused (EMSGSIZE): no record is longer than this, so the receiver never truncates one.
RECORD_MAX = 2 * SEND_BUFFER
FIRST_RECORD_MAX = RECORD_MAX - 1024   # the kernel's own limit is the buffer less 32 bytes
HELLO, TAKEN, REFUSED = b"H", b"A", b"R"    # the receiver's answers (module docstring)
ACCEPT_RETRY = 0.1           # seconds before a listener out of fds accepts again (the acceptor's back-off)
# A stream's summary lines ("hand-over: adopted ...") come once it has brought nothing for this
# long, and at its end: a predecessor that stays for its TLS tunnels keeps its stream open until
# `graceful_timeout`, and a summary at the end alone came that late (soak review 2026-12-05 #1).
# The first at info, later ones at debug (one line a second otherwise: review 2026-12-06 #1).
SUMMARY_QUIET = 1.0


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
        self.inbound: set = set()           # the streams of predecessors sending to us
        # Out of fds, a predecessor must still get through, to hear that we refuse its items:
        # this one is given up for the accept (the classic spare-descriptor trick).
        self.spare = -1
        self._take_spare()

    def _accept(self, mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:                     # EMFILE, ENFILE
            conn = self._accept_with_spare()
            if conn is None:
                return
        conn.setblocking(False)
        _Inbound(self, conn)

    def _accept_with_spare(self) -> socket.socket | None:
        conn = None
        if self.spare >= 0:
            os.close(self.spare)
            self.spare = -1
            try:
                conn, _ = self.sock.accept()
            except OSError:
                pass
            self._take_spare()
        if conn is None:                    # epoll would report the listener again at once
            self.loop.remove(self.sock.fileno())
            self.loop.call_later(ACCEPT_RETRY, self._listen_again)
        return conn

    def _take_spare(self) -> None:
        try:
            self.spare = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.spare = -1

    def _listen_again(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.add(self.sock.fileno(), EPOLLIN, self._accept)
            if self.spare < 0:
                self._take_spare()

    @property
    def receiving(self) -> bool:
        """An item is on its way: taken (we answered b"A" to its first record, so the sender
        let go of its sockets) but its bytes not all in, so not counted as a connection yet.
        A worker that stops meanwhile must wait for it (review 2026-12-03-handover #5)."""
        return any(inbound.pending is not None for inbound in self.inbound)

    def close(self) -> None:
        for inbound in self.inbound:        # what came lately is said before we go
            inbound.summarize()
        self.loop.remove(self.sock.fileno())
        self.sock.close()
        if self.spare >= 0:
            os.close(self.spare)
            self.spare = -1


class _Inbound:
    """One sender's stream of tunnels and connections."""

    def __init__(self, receiver: HandoverReceiver, conn: socket.socket):
        self.receiver = receiver
        self.worker = receiver.worker
        self.conn = conn
        self.pending = None            # (kind, sockets, header, bytearray) while data is due
        # Since the last summary (`summarize`):
        self.received = 0              # tunnels
        self.clients = 0               # keep-alive connections
        self.refused = 0               # items we had no fds for (the sender keeps them)
        self.orphans = 0               # connections from a listener we do not have (LastRequestClient)
        self.pauses: list[float] = []  # seconds from detach to resume, per item
        self.last_item = 0.0           # when the last item came (the loop's clock)
        self.summary_due = None        # the timer of `_quiet`, while one is pending
        self.reported = False          # the first summary is said (at info; later ones at debug)
        receiver.loop.add(conn.fileno(), EPOLLIN, self._on_event)
        receiver.inbound.add(self)
        self._answer(HELLO)

    def _answer(self, what: bytes) -> None:
        """A sender of a release before the answers never reads them: once its socket is
        full, they are dropped (it does not wait for them either)."""
        try:
            self.conn.send(what)
        except OSError:
            pass

    def _on_event(self, mask: int) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.conn, RECORD_MAX, 2)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                # The sender closed with our answers unread (a release before them, or ours
                # after HELLO_WAIT): Linux reports that once, *before* the records still
                # queued, which are ours to adopt (review 2026-12-04-versions r02).
                continue
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
            header, _, data = message[1:].partition(b"\0")
            header = json.loads(header)
            if len(fds) != (2 if kind == b"T" else 1):
                # Out of fds: the kernel installed what fitted and dropped the rest; the
                # sender still holds the sockets and relays on with them.
                for fd in fds:
                    os.close(fd)
                self._answer(REFUSED)
                self._came()
                if not self.refused:
                    self.worker.log_error("warning", "hand-over: out of file descriptors: what we cannot "
                                                     "take stays with the predecessor")
                self.refused += 1
                kind, fds = b"S", []                    # its data records are skipped
            else:
                self._answer(TAKEN)
            self.pending = (kind, [socket.socket(fileno=fd) for fd in fds], header, bytearray(data))
        elif kind == b"D" and self.pending is not None:
            self.pending[3].extend(message[1:])
        else:
            raise ValueError(f"unexpected record {kind!r}")
        kind, socks, header, data = self.pending
        if len(data) < (header["inbuf"] if "inbuf" in header else header["to_backend"] + header["to_client"]):
            return
        self.pending = None
        if kind == b"S":
            self.worker.handover_received()
            return
        for sock in socks:
            sock.setblocking(False)
        pause = time.time() - header["sent_at"]
        self.pauses.append(pause)
        if kind == b"T":
            self._adopt_tunnel(socks, header, data, pause)
        else:
            state = header["state"]
            kind = ClientConnection if listened_on(self.worker, socks[0]) else LastRequestClient
            client = kind.adopt(self.worker, socks[0], state, bytes(data))
            self.worker.client_adopted(client)
            self.clients += 1
            self.orphans += kind is LastRequestClient
        self._came()
        self.worker.handover_received()

    def _came(self) -> None:
        """An item came: its summary once the stream goes quiet (SUMMARY_QUIET)."""
        loop = self.worker.loop
        self.last_item = loop.now
        if self.summary_due is None:
            self.summary_due = loop.call_later(SUMMARY_QUIET, self._quiet)

    def _quiet(self) -> None:
        loop = self.worker.loop
        self.summary_due = None
        quiet_for = loop.now - self.last_item
        if quiet_for < SUMMARY_QUIET:
            self.summary_due = loop.call_later(SUMMARY_QUIET - quiet_for, self._quiet)
        else:
            self.summarize()

    def _adopt_tunnel(self, socks: list, header: dict, data: bytearray, pause: float) -> None:
        split, state = header["to_backend"], header["state"]
        counted = state["bytes_in"] + state["bytes_out"]        # on the member's count by the predecessor
        on_close = self.worker.lb.adopt(header["context"], self.worker.tunnel_closed, counted)   # busy here now
        loop = self.worker.loop
        tunnel = Tunnel(loop, Endpoint(loop, socks[0]), Endpoint(loop, socks[1]), 0.0, on_close,
                        to_backend=bytes(data[:split]), to_client=bytes(data[split:]),
                        context=header["context"], state=header["state"])
        self.received += 1
        self.worker.tunnel_adopted(tunnel, pause)

    def _finish(self) -> None:
        if self.pending is not None:      # the sender died mid-record: that item is lost
            for sock in self.pending[1]:
                sock.close()
            self.pending = None
            self.worker.log_error("error", "hand-over: the predecessor went away in the middle of an item: "
                                           "one connection lost")
        self.receiver.inbound.discard(self)
        self.worker.loop.remove(self.conn.fileno())
        self.conn.close()
        self.worker.handover_received()
        self.summarize()

    def summarize(self) -> None:
        """The error log's lines for what came since the last ones: the first at info, later
        ones (connections a predecessor hands over as their exchanges end there) at debug, as
        the predecessor says its own (worker.handsend `_report`)."""
        if self.summary_due is not None:
            self.summary_due[2] = None
            self.summary_due = None
        log, level = self.worker.log_error, "debug" if self.reported else "info"
        if self.received or self.clients or self.orphans:
            self.reported = True
        if self.clients:
            log(level, f"hand-over: adopted {self.clients} keep-alive connections")
        if self.orphans:
            log(level, f"hand-over: {self.orphans} keep-alive connections came from a listener this configuration "
                       "does not have (removed, or TLS now): each is closed after its next response")
        if self.refused:
            log("warning", f"hand-over: out of file descriptors: {self.refused} tunnels and connections left with "
                           "the predecessor")
        if self.received:
            pauses = sorted(self.pauses)
            log(level, f"hand-over: adopted {self.received} tunnels; pause p50 {_ms(pauses, 0.5)} "
                       f"p99 {_ms(pauses, 0.99)} max {_ms(pauses, 1.0)}")
        self.received = self.clients = self.refused = self.orphans = 0
        self.pauses = []


def _ms(values: list[float], q: float) -> str:
    return f"{values[min(int(q * len(values)), len(values) - 1)] * 1000:.1f}ms" if values else "-"


class LastRequestClient(ClientConnection):
    """A keep-alive connection handed over from a listener this worker's configuration no
    longer has (removed, or TLS now: worker.clientmove.listened_on).  Closing it at once
    would lose a request the client may be sending right now, the race the hand-over exists
    to avoid; so its next response says `Connection: close` (HAProxy's
    idle-close-on-response), and if none comes, its keep-alive deadline closes it.  A class
    of its own, chosen at adoption, so the common path checks nothing."""

    __slots__ = ()

    def _start(self, head) -> None:
        head.keep_alive = False
        super()._start(head)
