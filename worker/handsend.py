"""The stopping worker's half of a hand-over (worker.handover has the protocol and the
receiving half): it finds the successor, detaches its plain tunnels and keep-alive
connections one by one, sends them, and waits for the successor's answer before it lets go
of their sockets; an item the successor refuses (out of file descriptors), or never
answers (it died), relays on here.  Never blocks its loop: records are written only when
the socket is writable, and what does not fit waits for the next time.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import socket
import time

from tunnel.tunnel import Tunnel
from worker.handover import CHUNK, FIRST_RECORD_MAX, HELLO, REFUSED, SEND_BUFFER, TAKEN, address
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT

# How long to look for a successor that is still starting.  A new generation's worker is
# ready in ~0.3 s on a quiet machine, but in seconds on a loaded one (imports, TLS contexts):
# at 3 s, a reload under load once left 1,000 tunnels in the old generation until
# graceful_timeout (test_handover).  Waiting costs nothing: the tunnels relay meanwhile.
CONNECT_PATIENCE = 10.0
RETRY = 0.05                 # seconds between looks for a successor
UPGRADE_WAIT = 30.0          # for the new master's workers once ours is gone (its own deadline)
HELLO_WAIT = 1.0             # no b"H" by then: a receiver of a release that does not answer
# Items sent between two reads of the successor's answers.  It answers each item with one
# 1-byte message and drops an answer our receive queue has no room for (a release before the
# answers never read them); the queue holds ~250 of them (SO_RCVBUF / skb size), so a send
# loop of 500 items that read none lost answers and waited for them until graceful_timeout
# (test_handover's 1,000 tunnels over two workers: one worker of ~500, now and then).
ANSWERS_EVERY = 32


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
    `handover_finished(found)` when it has nothing more to do (nothing queued, being sent or
    waiting for its answer)."""

    def __init__(self, worker):
        self.worker = worker
        self.master_pid = os.getppid()      # the master that forked us (after its death: init's)
        self.loop = worker.loop
        self.sock: socket.socket | None = None
        self.queue: collections.deque = collections.deque()     # tunnels and connections to send
        self.outgoing: collections.deque = collections.deque()  # the rest of a sent item's records
        self.moved = 0
        self.looking_since = 0.0
        self.takes_connections = False      # a successor is connected, or expected
        self.reported = False
        self.answers: bool | None = None    # whether the successor answers each item (None: not known yet)
        self.hello_timer: list | None = None
        self.mask: int | None = None        # our socket's epoll interest (None: out of epoll)
        self.unanswered: collections.OrderedDict = collections.OrderedDict()   # sent, paused, in order
        self.refused: set = set()           # a successor had no fds for them: they stay here

    def start(self) -> bool:
        """Look for the successor; False when none is to be expected (the server stops)."""
        if not self._expected():
            return False
        self.takes_connections = True
        self.looking_since = self.loop.now
        self._find()
        return True

    def offer(self, item) -> None:
        if self.sock is not None and item.movable and item not in self.refused:
            self.queue.append(item)
            self._want_writable()
        # while still looking, `_find` collects every movable item once it connects

    def after_master_died(self, hand_over, exit_now) -> None:
        """Our master is gone.  If it had started an upgrade (a process it started with
        MPM_UPGRADE_FROM naming it, mpm.upgrade), a newer generation serves or soon will: wait
        for one while that master lives, up to UPGRADE_WAIT s, then `hand_over()` (a graceful
        stop); otherwise `exit_now()`."""
        successor = None if self._expected() else _upgrade_started_by(self.master_pid)
        if successor is None and not self._expected():
            exit_now()
            return
        deadline = self.loop.now + UPGRADE_WAIT

        def look() -> None:
            if self._expected():
                self.worker.log_error("warning", "master process is gone during an upgrade: handing over to "
                                                 "the new master's workers, then exiting")
                hand_over()
            elif self.loop.now >= deadline or not _alive(successor):
                exit_now()
            else:
                self.loop.call_later(RETRY, look)
        look()

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
        return [item for items in (worker.tunnel_set, worker.clients) for item in items
                if item.movable and item not in self.refused]

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
        self.sock, self.answers, self.mask = sock, None, None
        self._interest(EPOLLIN)             # its answers; sending waits for its b"H"
        self.hello_timer = self.loop.call_later(HELLO_WAIT, self._no_hello)
        self.queue.extend(self._movable())

    def _no_hello(self) -> None:
        self.hello_timer = None
        if self.sock is not None and self.answers is None:
            self.answers = False            # a release that does not answer: items are its once sent
            self._want_writable()

    def _want_writable(self) -> None:
        if self.answers is not None:
            self._interest(EPOLLIN | EPOLLOUT)

    def _interest(self, mask: int | None) -> None:
        if self.sock is None or mask == self.mask:
            return
        fd = self.sock.fileno()
        if mask is None:
            self.loop.remove(fd)
        elif self.mask is None:
            self.loop.add(fd, mask, self._on_event)
        else:
            self.loop.modify(fd, mask)
        self.mask = mask

    def _on_event(self, mask: int) -> None:
        if mask & EPOLLIN and not self._read_answers():
            return
        if mask & (EPOLLERR | EPOLLHUP):
            self._fail("the successor went away")
        elif mask & EPOLLOUT:
            self._send()

    def _read_answers(self) -> bool:
        """b"H", then one b"A" or b"R" per item, in order; False once the successor is gone."""
        while True:
            try:
                answer = self.sock.recv(16)
            except BlockingIOError:
                return True
            except OSError:
                answer = b""
            if not answer:
                self._fail("the successor went away")
                return False
            if answer == HELLO and self.answers is None:
                self.answers = True
                self.hello_timer[2] = None
                self.hello_timer = None
                self._want_writable()
            elif answer in (TAKEN, REFUSED) and self.unanswered:
                item, _ = self.unanswered.popitem(last=False)
                if answer == TAKEN:
                    self._passed(item)
                else:
                    self.refused.add(item)      # out of fds there: it relays on here
                    item.reattach()
                self._settled()

    def _send(self) -> None:
        try:
            if not self._send_outgoing():
                return
            sent = 0
            while self.queue:
                item = self.queue.popleft()
                if not item.movable or item in self.unanswered:
                    continue
                if not self._send_item(item) or not self._send_outgoing():
                    return
                sent += 1
                if self.answers and sent % ANSWERS_EVERY == 0 and not self._read_answers():
                    return          # the successor went away (_fail has looked for another)
        except OSError as exc:
            self._fail(f"the successor stopped taking connections: {exc.strerror or exc}")
            return
        self._interest(EPOLLIN)
        self._settled()

    def _settled(self) -> None:
        """Nothing to send or to hear about: out of epoll (a successor that exits later is no
        news; should more come, a failed send says so), and said."""
        if not (self.queue or self.outgoing or self.unanswered):
            self._interest(None)
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
        if self.answers:
            self.unanswered[item] = None        # paused, ours, until the successor answers
        else:
            self._passed(item)
        return True

    def _passed(self, item) -> None:
        """The successor holds the item's sockets now: let go of ours."""
        self.moved += 1
        if isinstance(item, Tunnel):
            item.client.close()
            item.backend.close()
            self.worker.tunnel_moved(item)
        else:
            item.handed_over()          # no longer movable: it may still be queued a second time
            item.ep.close()
            self.worker.client_moved(item)

    def _send_outgoing(self) -> bool:
        """The rest of the last item's records; False while the socket is full.  A failure
        here loses that item (its sockets may be the successor's already)."""
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
        """The successor is gone or refuses: what was not passed stays here (an item it never
        answered for, it never touched either); look for another.  Routine in a burst of
        reloads (the successor retired in turn), so a warning only when items were in flight
        (they carry on here: nothing is lost either way)."""
        level = "warning" if self.unanswered else "info"
        self.worker.log_error(level, f"hand-over: {why}; looking for another successor")
        self._interest(None)
        self.sock.close()
        self.sock = None
        if self.hello_timer is not None:
            self.hello_timer[2] = None      # (a timer's entry: its callback, cancelled)
            self.hello_timer = None
        for item in self.unanswered:
            item.reattach()
        self.unanswered.clear()
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
                                 "stay here (TLS, in the middle of an exchange, or refused for want of fds)")
        worker.handover_finished(True)

    def close(self) -> None:
        if self.sock is not None:
            self._interest(None)
            self.sock.close()
            self.sock = None


def _upgrade_started_by(master_pid: int) -> int | None:
    """The new master `mpmctl upgrade` had `master_pid` start (mpm.upgrade.start), if any.
    Read only when our master has died: a scan of the processes' environments."""
    import psutil
    wanted = str(master_pid)
    for process in psutil.process_iter(["environ"]):
        if (process.info["environ"] or {}).get("MPM_UPGRADE_FROM") == wanted:
            return process.pid
    return None


def _alive(pid: int | None) -> bool:
    import psutil
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
