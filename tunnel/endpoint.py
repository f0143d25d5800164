"""One socket's transport: send now and keep the rest, flush, half-close, epoll interest.

Every connection the worker holds is an `Endpoint`: the client side and the backend
side of an HTTP exchange, and both sides of a tunnel.  So sending, keeping what the
socket did not take, and deriving the epoll interest from that are written once
(CPython's `asyncio/selector_events.py` is the model: a write is tried at once and only
the remainder is kept).

`out` is the one piece of state: bytes accepted for sending that the socket has not
taken yet (None when there are none).  While it exists, `want()` adds EPOLLOUT, and the
owner stops reading whatever feeds it (back-pressure), so what an endpoint holds is
bounded by one read's worth.  The owner says whether it wants to read; the mask is
derived from that and `out`, and changed in the kernel only when it differs, so a
keep-alive exchange on a pooled connection costs no epoll_ctl at all.

The handler (whoever owns the endpoint now: a client connection, an exchange, a pool,
a tunnel) changes with `hand_to`, which costs no system call.

`send_batched` holds a small write to the end of the loop turn (`EventLoop.held`): it
becomes `out`, as if the socket had taken none of it, without EPOLLOUT (`held`); once the
turn's events are done the loop sends it, and only if the socket does not take it whole
does the owner get EPOLLOUT, to drain it as after a partial send.  Why: a send to a peer
asleep in epoll_wait wakes it, and on this 2-core VM that wake-up (an IPI, in the sender's
system time) was ~5 of a worker's ~17 µs of kernel time per small keep-alive request (perf,
cpu-clock samples under `sock_def_readable`): between two of our sends the fast peer has
gone back to sleep.  Sent back to back, only the first send of a burst finds it asleep.
Used for a request head with no body behind it (the exchange only waits for the answer):
S1 in four interleaved rounds, 0.94-1.02x the proxy CPU per request, 0.93-1.03x the whole
machine's, the backend's 0.82-0.96x (bench/RESULTS-2026-12-02-late.md).  Holding whole
small responses as well was tried twice: with the exchange waiting for the turn's end, and
with the held response counting as sent (the exchange done at once).  Both cut kernel time
(the second by 0.4-7 µs per S1 request, in 7 rounds of 7) and cost about as much again in
user time (+5 % instructions: two more calls and a copy), 0.74-1.04x the CPU per request,
median 0.99 (bench/RESULTS-2026-12-02-night.md), so responses go at once.  Only plain sockets, at
most HOLD_MAX bytes: a TLS write, or a larger one, costs more to copy than the wake-up.

TLS: bytes an SSLSocket holds (decrypted, or read ahead) are invisible to epoll, so
readers ask `conf.readahead.buffered`; a write that raised want-write must be retried with
the same leading bytes, so TLS writes go in pieces of TLS_WRITE_MAX; a half-close goes
through `socket.socket.shutdown`, because `SSLSocket.shutdown()` throws the TLS state away,
after the TLS close_notify, which closing sends too (conf.readahead.close_notify).
"""

from __future__ import annotations

import os
import select
import socket
import ssl

from conf.readahead import buffered, close_notify

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
# The peer's close_notify reads as b"" only while ours is unsent; after our half-close
# (`shutdown_write`) CPython raises this instead.  Either way it is the peer's clean EOF.
CLEAN_EOF = ssl.SSLZeroReturnError
TLS_WRITE_MAX = 64 * 1024
HOLD_MAX = 4096          # send_batched: larger writes go at once (their copy would cost more)
# MPM_BATCH_SENDS=0 sends at once everywhere (the bench's A/B switch, as MPM_SPLICE is).
BATCHING = os.environ.get("MPM_BATCH_SENDS", "1") != "0"
_plain_shutdown = socket.socket.shutdown
_SSLSocket = ssl.SSLSocket


def send_some(sock, data) -> int:
    """send(), in pieces of TLS_WRITE_MAX for an SSLSocket; returns what went out.
    Raises the would-block errors only when nothing went out."""
    if sock.__class__ is not _SSLSocket or len(data) <= TLS_WRITE_MAX:   # one piece: no loop
        return sock.send(data)
    total, size = 0, len(data)
    view = memoryview(data)
    while total < size:
        try:
            total += sock.send(view[total:total + TLS_WRITE_MAX])
        except WOULD_BLOCK:
            if total == 0:
                raise
            break
    return total


class Endpoint:
    """`loop` needs add/modify/remove/set_handler (worker.loop.EventLoop)."""

    __slots__ = ("loop", "sock", "fd", "mask", "out", "tls", "handler", "held")

    def __init__(self, loop, sock) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.mask = None            # epoll interest now; None: not registered
        self.out = None             # bytes the socket has not taken yet
        self.tls = sock.__class__ is _SSLSocket
        self.handler = None
        self.held = False           # `out` waits for the end of the loop turn (send_batched)

    # -- registration --------------------------------------------------------------------
    def register(self, mask: int, handler) -> None:
        self.handler = handler
        loop = self.loop
        registered = loop.take_over(self.fd, self.sock) if loop.passed else None
        if registered is None:
            loop.add(self.fd, mask, handler)
        else:                           # still in epoll from its last owner (EventLoop.pass_on)
            loop.set_handler(self.fd, handler)
            if registered != mask:
                loop.modify(self.fd, mask)
        self.mask = mask

    def hand_to(self, handler) -> None:
        """A new owner for the events; the interest stays as it is."""
        self.handler = handler
        if self.mask is not None:
            self.loop.set_handler(self.fd, handler)

    def unregister(self) -> None:
        if self.mask is not None:
            self.loop.remove(self.fd)
            self.mask = None

    def want(self, reading: bool) -> None:
        """Derive the interest: EPOLLIN if the owner reads, EPOLLOUT while `out` holds bytes.
        Not registered and nothing wanted: stays out of epoll (a paused tunnel side)."""
        mask = (EPOLLIN if reading else 0) | (EPOLLOUT if self.out and not self.held else 0)
        if mask != self.mask:
            if self.mask is None:
                if mask:
                    self.mask = mask
                    self.loop.add(self.fd, mask, self.handler)
            else:
                self.mask = mask
                self.loop.modify(self.fd, mask)

    # -- bytes -----------------------------------------------------------------------------
    def send(self, data) -> None:
        """Send what the socket takes now and keep the rest, behind anything already kept.
        Raises OSError when the connection failed."""
        if self.out:
            self.out += bytes(data)
            return
        try:
            sent = self.sock.send(data) if not self.tls else send_some(self.sock, data)
        except WOULD_BLOCK:
            sent = 0
        if sent < len(data):
            self.out = bytes(data[sent:])

    def send_batched(self, data) -> None:
        """`send`, at the end of this loop turn (module docstring) when it may be held.
        Held, it is as if the socket had taken none of it; if the loop cannot send it whole
        either, the owner gets EPOLLOUT (EventLoop.held)."""
        if self.out is not None or self.tls or len(data) > HOLD_MAX or not BATCHING or self.handler is None:
            self.send(data)
            return
        self.out = bytes(data)
        self.held = True
        self.loop.held.append(self)

    def flush(self) -> bool:
        """Send what is kept; True once nothing is left.  Raises OSError."""
        out = self.out
        try:
            sent = self.sock.send(out) if not self.tls else send_some(self.sock, out)
        except WOULD_BLOCK:
            return False
        if sent < len(out):
            self.out = out[sent:]
            return False
        self.out = None
        return True

    def pending(self) -> bool:
        """A TLS socket holds bytes (decrypted, or read ahead): epoll will not report them."""
        return self.tls and buffered(self.sock)

    def shutdown_write(self) -> None:
        if self.tls:
            close_notify(self.sock)     # a TLS peer takes a FIN without it for a truncation
        try:
            _plain_shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            pass    # the peer already went away; its own EOF or error will say so

    def close(self, notify: bool = True) -> None:
        """`notify` False: no TLS close_notify, so the peer sees a truncation (an aborted response)."""
        if self.mask is not None:       # the close below takes it out of epoll (EventLoop.forget)
            self.loop.forget(self.fd)
            self.mask = None
        # The handler is usually a bound method of our owner, who holds us: a reference cycle
        # that only the cyclic GC would free, late (a slowloris's long-lived connections reach
        # its old generations), so memory would stay up long after the connections are gone.
        self.handler = None
        if self.tls and notify:
            close_notify(self.sock)     # RFC 8446 §6.1; the peer's is not read for (conf.readahead)
        try:
            self.sock.close()
        except OSError:
            pass
