"""Lingering close: how a client connection ends while its client may still be sending.

Why: closing a socket whose receive queue holds bytes we never read makes the kernel reset
the connection at once (`tcp_close`: a RST, and whatever of our answer it had not sent yet
is thrown away).  A client still sending the body of a request we refused (a 413) then
fails its next send with EPIPE or ECONNRESET, and many stop there, without reading the
answer that came first; a client on Windows discards received bytes it has not read when
the RST arrives.  So the answer a malformed or over-limit request deserves is lost exactly
when it matters.  nginx (`lingering_close on`, its default: only when "a client may be
sending more data") and Apache (`ap_lingering_close`) half-close instead, and read and
discard what comes until the client closes or goes quiet.  So do we, with nginx's bounds:

- our FIN goes behind the answer (`shutdown(SHUT_WR)`; over TLS after the close_notify);
- what arrives is read straight from the descriptor and thrown away (over TLS too: the
  records are never decrypted);
- the socket closes at the client's EOF or error, after `timeouts.lingering` seconds without
  a byte (nginx's lingering_timeout, 5 s by default; 0 turns lingering off), or
  LINGER_MAX_TIME after the half-close whatever comes (nginx's lingering_time, 30 s).

A lingering socket is no longer a connection of the worker's (it was counted closed, its
holds released): it serves nothing.  What bounds it is LINGER_MAX per worker (past that a
connection closes at once, as before) and the times above.  A stopping worker waits for
them as for connections (within `mpm.graceful_timeout`), so a reload cuts none short.

When: `ClientConnection.close(linger=True)`, which `exchange_done` asks for when the head was
refused (400, 408, 414, 431), the request's body was left unread (a 413, an early response),
or bytes past the last head were dropped (what nginx's heuristic looks at); and
`H2Connection.close(linger=True)` after a GOAWAY of ours (a connection error, abuse, the
idle timeout, a reload), when frames may still be on their way.  A connection that ends
after a complete request (`Connection: close`, or a 404 of ours to one) closes at once: its
client sends nothing more, and lingering would cost every such connection a shutdown, an
epoll round and a read (TLS benchmarks close after each request).
"""

from __future__ import annotations

import os
from socket import IPPROTO_TCP, TCP_CORK

from tunnel.endpoint import WOULD_BLOCK

LINGER_MAX_TIME = 30.0    # seconds after the half-close: close, whatever the client still sends
LINGER_MAX = 512          # lingering sockets per worker; past that, close at once
READS_PER_EVENT = 4       # then back to the loop: a fast sender cannot hold the worker
_SCRATCH = [bytearray(65536)]    # what is read goes here and is never looked at


class LingeringSet(set):
    """A worker's lingering sockets; `on_empty()` once the last of them has closed (a
    stopping worker waits for that, as for its connections)."""

    def __init__(self, on_empty) -> None:
        super().__init__()
        self.on_empty = on_empty


class Lingering:
    """One half-closed client socket, read until it ends (module docstring)."""

    __slots__ = ("lingering", "loop", "ep", "quiet", "deadline", "until")

    def __init__(self, lingering: LingeringSet, ep, quiet: float) -> None:
        self.lingering = lingering
        self.loop = loop = ep.loop
        self.ep = ep
        self.quiet = quiet
        self.until = loop.now + LINGER_MAX_TIME
        self.deadline = min(loop.now + quiet, self.until)
        ep.out = None                # nothing is kept to send: the caller checked
        ep.hand_to(self.on_event)
        ep.shutdown_write()
        ep.want(True)
        lingering.add(self)
        loop.timed.add(self)

    def on_event(self, mask: int) -> None:
        fd = self.ep.fd
        self.deadline = min(self.loop.now + self.quiet, self.until)     # it sent something
        for _ in range(READS_PER_EVENT):
            try:
                n = os.readv(fd, _SCRATCH)
            except WOULD_BLOCK:
                return
            except OSError:
                n = 0
            if n == 0:
                self.close()
                return

    def on_deadline(self) -> None:
        self.close()

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): closed now."""
        self.close()

    def close(self) -> None:
        if self not in self.lingering:
            return
        self.lingering.discard(self)
        self.loop.timed.discard(self)
        self.ep.close(notify=False)      # the close_notify went with the half-close
        if not self.lingering:
            self.lingering.on_empty()


def close_or_linger(lingering: LingeringSet, ep, notify: bool, quiet: float) -> None:
    """Close `ep` now (`notify`: with a TLS close_notify, i.e. not cut short), or, when
    `quiet` (the seconds a client may stay silent; 0: close now) and the answer went out
    whole, half-close it and read until its client is done."""
    if quiet and notify and not ep.out and len(lingering) < LINGER_MAX:
        try:
            Lingering(lingering, ep, quiet)
            return
        except OSError:
            pass
    ep.close(notify=notify)


def cork(sock) -> None:
    """TCP_CORK for a connection whose last response is whole in hand and about to be sent
    (worker.response): the response, the TLS close_notify and the FIN leave in one segment (the
    close sends what the cork holds) where they took three.  The lane does the same in C
    (worker/_lane_io.c's `lane_cork`, with the measurement).  Never earlier: a cork holds a
    partial segment up to 200 ms, so a response that comes in parts would wait that long for
    each (review 2026-12-05-lanereview #1)."""
    try:
        sock.setsockopt(IPPROTO_TCP, TCP_CORK, 1)
    except OSError:
        pass        # not TCP (a unix socket listener): nothing to coalesce
