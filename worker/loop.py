"""The worker's event loop: one epoll, a handler per fd, coarse deadlines.

Why not `selectors`: its `modify()` rebuilds a key object and its `select()` builds
a list of (key, events) tuples per call; on the hot path we want `epoll.poll()` and a
dict lookup, nothing else (DESIGN.md: about 3x cheaper `modify`).

Where tunnel/_relay.c is built, a turn is the C relay's (`relay.turn`, tunnel/_relay_turn.c):
the same wait, `now` and dispatch, with a tunnel's events relayed in C, never reaching Python.
`_turn` below is its reference (MPM_NATIVE_RELAY=0).

Deadlines are swept, not heaped: every connection keeps one `deadline` float and the
loop checks them a few times a second.  Moving a deadline is then a plain attribute
store, which matters when every relayed message would otherwise push a heap entry.
"""

from __future__ import annotations

import heapq
import itertools
import select
import time

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
EPOLLRDHUP = select.EPOLLRDHUP

SWEEP_INTERVAL = 0.25   # seconds between deadline sweeps: the resolution of every timeout


class EventLoop:
    """`add(fd, events, handler)`; the handler is called with the event mask."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.epoll_fd = self._epoll.fileno()    # (`fileno`, without the call: a new connection's Lane takes it)
        self.handlers: dict[int, object] = {}
        self.now = time.monotonic()
        self._timers: list = []              # heap of (when, seq, callback)
        self._seq = itertools.count()
        self.timed: set = set()              # objects with .deadline and .on_deadline()
        self._next_sweep = self.now + SWEEP_INTERVAL
        # The earlier of the next sweep and the first timer: one comparison per loop turn says
        # whether either is due (every builtin call in a turn, min() or max(), cost ~1,000
        # instructions, and a turn is paid per request or per message under light load).
        self._wake = self._next_sweep
        # Log sinks (worker.logsink.LogSink) written after each iteration's events: a buffered one
        # as its policy says, others at once.  Checked inline, not through a callback: a Python
        # call per loop turn was ~1.5k instructions of a small request's ~190k, twice.
        self.sinks: list = []
        self.soon: list = []                 # one-shot callables for the next iteration (TLS pending data)
        # One-shot callables for the end of this iteration, after `soon`'s: a new TLS connection's
        # first handshake round, after its accept batch (worker/_lane_handshake.c says why).
        self.turn_end: list = []
        self.held: list = []                 # endpoints whose `out` waits for the turn's end (send_batched)
        self.passed: dict = {}               # fd -> (mask, socket) between two owners (`pass_on`)
        # What a callable that raised is handed to (worker.faults: its connection ends, the
        # loop goes on); until the worker sets it, the exception ends the loop.
        self.contain = _propagate
        # The process's relay of plain tunnels (tunnel.native), once it has one: its `turn` is
        # then this loop's turn, in C (tunnel/_relay_turn.c), and `_turn` below the reference.
        self.relay = None
        self.running = True

    # -- registration --------------------------------------------------------------
    def fileno(self) -> int:
        """The epoll's descriptor (tunnel.native's relay waits on it; worker.lane's C changes its
        connections' interest there, through `epoll_fd`)."""
        return self._epoll.fileno()

    def add(self, fd: int, events: int, handler) -> None:
        self.handlers[fd] = handler
        self._epoll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def remove(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass   # already closed: epoll dropped it on its own

    def pass_on(self, fd: int, mask: int, sock) -> None:
        """The fd's owner is done with it but the socket lives on (a TLS handshake, its client
        connection next): it stays in epoll with `mask`, for `take_over` by the next owner,
        which saves a DEL and an ADD per connection.  The caller calls `passed_on` after
        handing the socket over, which takes the fd out of epoll if nobody took it."""
        self.handlers.pop(fd, None)
        self.passed[fd] = (mask, sock)

    def take_over(self, fd: int, sock) -> int | None:
        """The mask `sock`'s fd is registered with, if its last owner passed it on; else None."""
        passed = self.passed.pop(fd, None)
        if passed is None or passed[1] is not sock:
            return None
        return passed[0]

    def passed_on(self, fd: int) -> None:
        passed = self.passed.pop(fd, None)
        if passed is not None and passed[1].fileno() == fd:    # not taken, and not closed either
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    def forget(self, fd: int) -> None:
        """The fd is about to be closed, which takes it out of epoll by itself: drop its
        handler without the system call.  Only for a descriptor no other process shares
        (what goes to another worker is `remove`d first: a registration belongs to the open
        file description, and would outlive our close)."""
        self.handlers.pop(fd, None)

    def set_handler(self, fd: int, handler) -> None:
        """Hand an fd to a new owner without a syscall (pool check-out, tunnel switch)."""
        self.handlers[fd] = handler

    # -- time ------------------------------------------------------------------------
    def call_soon(self, callback) -> None:
        """Run `callback` on the next iteration without waiting in poll (bytes that a TLS
        object holds decrypted are invisible to epoll)."""
        self.soon.append(callback)

    def next_turn(self, callback) -> list:
        """Run `callback` in a later loop turn, once `now` has moved on: a timer due at `now`
        itself would run in this very turn (timers run after the events), and what it checks
        against `now` (an idle connection's `since`, say) would not have changed."""
        return self.call_later(1e-6, callback)

    def call_later(self, delay: float, callback) -> list:
        """One-shot timer; returns its entry, whose callback (index 2) may be set to None to
        cancel it."""
        entry = [self.now + delay, next(self._seq), callback]
        heapq.heappush(self._timers, entry)
        if entry[0] < self._wake:
            self._wake = entry[0]
        return entry

    def _housekeeping(self, now: float) -> None:
        """What `_wake` said is due: the timers whose time came, then the deadline sweep."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            callback = heapq.heappop(timers)[2]
            if callback is not None:
                try:
                    callback()
                except Exception as exc:
                    self.contain(exc, callback, None)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._sweep()
        self._wake = timers[0][0] if timers and timers[0][0] < self._next_sweep else self._next_sweep

    def _sweep(self) -> None:
        now = self.now
        expired = [obj for obj in self.timed if obj.deadline <= now]
        for obj in expired:
            if obj.deadline <= now:    # an earlier expiry in this sweep may have moved it
                try:
                    obj.on_deadline()
                except Exception as exc:
                    self.contain(exc, obj.on_deadline, None)

    # -- running ---------------------------------------------------------------------
    def run(self) -> None:
        handlers = self.handlers
        sinks = self.sinks        # only ever changed in place
        while self.running:
            timeout = self._wake - self.now
            if self.soon or self.held or timeout < 0.0:
                timeout = 0.0
            relay = self.relay
            if relay is not None:
                busy = relay.turn(self, handlers, timeout)
            else:
                busy = self._turn(timeout)
            now = self.now
            if now >= self._wake:
                self._housekeeping(now)
            if self.soon:
                soon, self.soon = self.soon, []
                self._call_each(soon)
            if self.turn_end:
                ends, self.turn_end = self.turn_end, []
                self._call_each(ends)
            if self.held:
                self._send_held()
            for sink in sinks:      # worker.logsink.LogSink: due, full, or an idle turn
                if sink.pending and (now >= sink.due or sink.size >= sink.limit or not busy):
                    sink.flush()

    def _turn(self, timeout: float) -> int:
        """Wait for events, set `now`, hand each to its fd's handler; the number of events."""
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            events = ()
        self.now = time.monotonic()
        handlers = self.handlers
        for fd, mask in events:
            handler = handlers.get(fd)
            if handler is not None:
                try:        # free in 3.11 until something raises (worker.faults)
                    handler(mask)
                except Exception as exc:
                    self.contain(exc, handler, fd)
        return len(events)

    def _call_each(self, callbacks: list) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                self.contain(exc, callback, None)

    def _send_held(self) -> None:
        """The writes held in this turn (Endpoint.send_batched), back to back.  One the
        socket took in part (or refused) gets its owner the EPOLLOUT epoll was not asked for,
        and the owner drains it as after a partial send.  Writes held by those owners wait
        for the next turn, which does not sleep."""
        held, self.held = self.held, []
        for endpoint in held:
            endpoint.held = False
            if endpoint.out is None or endpoint.handler is None:     # drained or closed since
                continue
            try:
                whole = endpoint.flush()
            except OSError:
                whole = False
            if not whole:
                handler = endpoint.handler
                try:
                    handler(EPOLLOUT)
                except Exception as exc:
                    self.contain(exc, handler, endpoint.fd)

    def close(self) -> None:
        self._epoll.close()


def _propagate(exc: Exception, callback, fd) -> None:
    raise exc
