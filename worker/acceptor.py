"""Accepting connections: the worker's listening sockets, its capacity, and running out of fds.

Each listening socket is this worker's own SO_REUSEPORT socket for its slot, so the
kernel spreads new connections over the slots.  A worker stops accepting (interest 0 on
its listeners) while it is at capacity, min(ThreadsPerChild, MaxRequestWorkers shared
over the slots): new clients then wait in this slot's backlog instead of being taken by
a worker that cannot serve them, and accepting resumes when a connection closes (or
goes idle between requests, which makes it one a full worker may close).

At capacity, a worker first makes room by closing a connection that holds no request
(worker.admission), once the newcomer has passed its client's limit (a client refused at
accept needs no room); it stops accepting only when every connection has one.

Out of file descriptors (EMFILE/ENFILE) or kernel memory, accepting pauses for
EMFILE_BACKOFF and resumes by itself (CPython's asyncio backs off the same way);
established connections go on.  That is said in the error log at most once every
LOG_INTERVAL seconds, with how many times it happened since, so a long shortage cannot
flood the log.

A stopping worker whose slot no newer worker takes (a reload or upgrade to fewer workers,
or the whole server stopping) holds the last copy of its listening sockets: the kernel
resets every connection still queued on a listening socket that closes, so it accepts
what is queued first (`close`).  A slot that is taken over needs none of that: its queue
is the successor's, which inherits the same socket.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from worker.h2.h2c import PRIOR_KNOWLEDGE
from worker.loop import EPOLLIN
from worker.tls import NATIVE_ACCEPT, accepted_socket, listener_context

ACCEPT_BATCH = 32            # accepts per readiness event: fairness against busy connections
EMFILE_BACKOFF = 0.1         # seconds to stop accepting when out of file descriptors
LOG_INTERVAL = 10.0          # seconds between two log lines about a shortage
DRAIN_MAX = 1024             # accepts per listener when a retired slot empties its queue (backlog: 511)
_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_NONBLOCK = socket.SOCK_NONBLOCK


def _accept_in_python(listener: socket.socket, tcp: bool):
    """worker/_accept.c's `accept`, where it is not built: (fd, host bytes) of a new
    connection, non-blocking, Nagle off if `tcp`; None when none waits."""
    try:
        fd, addr = listener._accept()
    except (BlockingIOError, InterruptedError):
        return None
    try:
        sock = socket.socket(listener.family, listener.type, listener.proto, fd)
    except OSError:
        os.close(fd)
        raise
    try:
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    if tcp:             # best effort, as in C: the peer may have reset it already
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.detach()
    return fd, (addr[0] if isinstance(addr, tuple) else "").encode()


_accept_one = _accept_in_python
if NATIVE_ACCEPT:
    with contextlib.suppress(ImportError):
        from worker._accept import accept as _accept_one


class Acceptor:
    def __init__(self, worker, listeners, tls_contexts: dict):
        self.worker = worker
        self.loop = worker.loop
        self.listeners = listeners          # [(socket, conf.Listener)]
        self.accepting = False
        self.paused_by_shortage = False
        self.recheck = None                 # the timer of `_look_again`, while one is pending
        self.shortages = 0                  # since the last log line
        self.logged_at = -LOG_INTERVAL
        self.kinds = {}                     # listening socket -> (family, type, proto) of what it accepts
        self.tcp = {}                       # listening socket -> whether its connections are TCP (Nagle off)
        self.sources = {}                   # listening socket -> (context, proxy_protocol)
        for sock, listener in listeners:
            sock.setblocking(False)
            self.kinds[sock] = (sock.family, sock.type, sock.proto)
            self.tcp[sock] = sock.family != socket.AF_UNIX
            context = tls_contexts.get(listener.address) if listener.tls is not None else None
            if listener.tls is not None and context is None:     # the master made none: as it would
                tls = worker.config.tls
                context = listener_context(listener.tls, None, tls.ciphersuites, tls.session_timeout)
            elif listener.http2 == "h2c":
                context = PRIOR_KNOWLEDGE      # worker.h2.h2c: the first bytes say HTTP/2 or HTTP/1.1
            self.sources[sock] = (context, listener.proxy_protocol)
            self.loop.add(sock.fileno(), EPOLLIN, lambda mask, sock=sock, context=context, proxy=listener.proxy_protocol:
                          self._ready(sock, context, proxy))
        self.ready: list = []               # listeners readable in this loop turn
        self.accepting = True

    def _ready(self, lsock: socket.socket, context, proxy_protocol: bool) -> None:
        """Accept at the end of the loop turn, after the events of established connections:
        a flood of new connections (most of them refused, under per-client limits) then
        delays a request already under way by nothing, instead of by a batch of accepts."""
        if not self.ready:
            self.loop.call_soon(self._accept_ready)
        self.ready.append((lsock, context, proxy_protocol))

    def _accept_ready(self) -> None:
        ready, self.ready = self.ready, []
        for lsock, context, proxy_protocol in ready:
            if self.accepting:
                self._accept(lsock, context, proxy_protocol)

    def _accept(self, lsock: socket.socket, context, proxy_protocol: bool) -> None:
        worker = self.worker
        for turn in range(ACCEPT_BATCH):
            full = worker.connections >= worker.capacity
            if full and (turn or not self._room_for_one()):
                return
            try:
                accepted = _accept_one(lsock, self.tcp[lsock])
                if accepted is None:
                    return
                sock = self._socket(lsock, accepted[0], context, proxy_protocol)
            except OSError as exc:
                if exc.errno in _SHORTAGE:
                    self._shortage(exc)
                return
            more = worker.connection_accepted(sock, accepted[1], context, proxy_protocol)
            if full and worker.connections > worker.capacity:
                # Admitted (or its client is still unknown: a PROXY header to read), so its room
                # is made now; one its client's limit refused is closed already and needs none,
                # and closing another client's connection for it would let a refused client
                # close one per attempt (review 2026-12-03-hostile #1).
                worker.admission.make_room()
            if not more:
                return

    def _socket(self, lsock: socket.socket, fd: int, context, proxy_protocol: bool) -> socket.socket:
        """The socket object of an accepted descriptor (non-blocking already, Nagle off for
        TCP: `_accept_one`).  For TLS (unless a PROXY header comes first, read from the plain
        socket) it is the SSLSocket itself: `socket.accept()` would make a plain one first,
        to be replaced.  The type says SOCK_NONBLOCK, so CPython sets no timeout in the kernel."""
        family, kind, proto = self.kinds[lsock]
        if context is not None and context is not PRIOR_KNOWLEDGE and not proxy_protocol:
            return accepted_socket(context, fd, family, kind | _NONBLOCK, proto)
        try:
            return socket.socket(family, kind | _NONBLOCK, proto, fd)
        except OSError:
            os.close(fd)
            raise

    def _room_for_one(self) -> bool:
        """Full, and a client waits in the backlog (the socket was readable): whether a
        connection that holds no request could be closed for it (it is, once the newcomer
        passed its client's limit), else stop accepting until one can be."""
        admission = self.worker.admission
        if admission.room():
            return True
        self.pause()
        self._look_again(admission)
        return False

    def _look_again(self, admission) -> None:
        """Paused at capacity: when some connection could be closed for room but none is old
        enough (all arrived in this loop turn), resume at the next turn, when they are."""
        if self.recheck is None and admission.may_make_room():
            self.recheck = self.loop.next_turn(self._rechecked)

    def _rechecked(self) -> None:
        self.recheck = None
        self.resume()

    def _shortage(self, exc: OSError) -> None:
        self.shortages += 1
        now = self.loop.now
        if now - self.logged_at >= LOG_INTERVAL:
            self.worker.log_error("error", f"accept: {exc.strerror}; accepting paused for {EMFILE_BACKOFF:g}s "
                                           f"at a time ({self.shortages} times since the last such line)")
            self.logged_at = now
            self.shortages = 0
        self.pause()
        self.paused_by_shortage = True
        self.loop.call_later(EMFILE_BACKOFF, self._after_shortage)

    def _after_shortage(self) -> None:
        self.paused_by_shortage = False
        self.resume()

    def pause(self) -> None:
        if self.accepting:
            self.accepting = False
            for sock, _ in self.listeners:
                self.loop.modify(sock.fileno(), 0)

    def resume(self) -> None:
        """Accept again, unless stopping, out of descriptors, or at capacity with nothing to
        close for room (worker.admission)."""
        worker = self.worker
        if self.accepting or self.paused_by_shortage or worker.stopping:
            return
        if worker.connections < worker.capacity or worker.admission.room():
            self.accepting = True
            for sock, _ in self.listeners:
                self.loop.modify(sock.fileno(), EPOLLIN)
        else:
            self._look_again(worker.admission)

    def close(self) -> None:
        """Stop for good: the listening sockets are the master's (and the next worker's),
        unless our slot is retired (module docstring): then what is queued is ours to take."""
        self.pause()
        if not self._slot_taken_over():
            self._drain()
        for sock, _ in self.listeners:
            self.loop.remove(sock.fileno())
            sock.close()
        self.listeners = []

    def _slot_taken_over(self) -> bool:
        """A newer worker has our slot (a reload or upgrade keeping it), or will have
        (recycling: the master starts the replacement within a tick): it inherits our sockets."""
        worker = self.worker
        return worker.recycling or any(
            row["pid"] and row["slot"] == worker.slot and (row["generation"] > worker.generation or (
                row["generation"] == worker.generation and row["started"] > worker.started_wall))
            for row in worker.peers())

    def _drain(self) -> None:
        """Accept what waits in our listening sockets' queues: served (and handed over) like
        any connection of a stopping worker, rather than reset by the close that follows.
        Beyond capacity if need be: a connection over it costs less than a reset."""
        worker = self.worker
        for lsock, (context, proxy_protocol) in self.sources.items():
            for _ in range(DRAIN_MAX):
                try:
                    accepted = _accept_one(lsock, self.tcp[lsock])
                    if accepted is None:
                        break
                    sock = self._socket(lsock, accepted[0], context, proxy_protocol)
                except OSError as exc:
                    if exc.errno in _SHORTAGE:      # out of fds: nothing more to take
                        break
                    continue                        # that one aborted: the rest are still there
                worker.connection_accepted(sock, accepted[1], context, proxy_protocol)
