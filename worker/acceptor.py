"""Accepting connections: the worker's listening sockets, its capacity, and running out of fds.

Each listening socket is this worker's own SO_REUSEPORT socket for its slot, so the
kernel spreads new connections over the slots.  A worker stops accepting (interest 0 on
its listeners) while it is at capacity, min(ThreadsPerChild, MaxRequestWorkers shared
over the slots): new clients then wait in this slot's backlog instead of being taken by
a worker that cannot serve them, and accepting resumes when a connection closes.

Out of file descriptors (EMFILE/ENFILE) or kernel memory, accepting pauses for
EMFILE_BACKOFF and resumes by itself (CPython's asyncio backs off the same way);
established connections go on.  That is said in the error log at most once every
LOG_INTERVAL seconds, with how many times it happened since, so a long shortage cannot
flood the log.
"""

from __future__ import annotations

import errno
import socket

from worker.h2.h2c import PRIOR_KNOWLEDGE
from worker.loop import EPOLLIN
from worker.tls import listener_context

ACCEPT_BATCH = 32            # accepts per readiness event: fairness against busy connections
EMFILE_BACKOFF = 0.1         # seconds to stop accepting when out of file descriptors
LOG_INTERVAL = 10.0          # seconds between two log lines about a shortage
_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    def __init__(self, worker, listeners, tls_contexts: dict):
        self.worker = worker
        self.loop = worker.loop
        self.listeners = listeners          # [(socket, conf.Listener)]
        self.accepting = False
        self.paused_by_shortage = False
        self.shortages = 0                  # since the last log line
        self.logged_at = -LOG_INTERVAL
        for sock, listener in listeners:
            sock.setblocking(False)
            context = tls_contexts.get(listener.address) if listener.tls is not None else None
            if listener.tls is not None and context is None:
                context = listener_context(listener.tls)
            elif listener.http2 == "h2c":
                context = PRIOR_KNOWLEDGE      # worker.h2.h2c: the first bytes say HTTP/2 or HTTP/1.1
            self.loop.add(sock.fileno(), EPOLLIN, lambda mask, sock=sock, context=context: self._accept(sock, context))
        self.accepting = True

    def _accept(self, lsock: socket.socket, context) -> None:
        worker = self.worker
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _SHORTAGE:
                    self._shortage(exc)
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not worker.connection_accepted(sock, addr[0].encode(), context):
                return

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
        """Accept again, unless stopping, at capacity or out of descriptors."""
        worker = self.worker
        if (not self.accepting and not self.paused_by_shortage and not worker.stopping
                and worker.connections < worker.capacity):
            self.accepting = True
            for sock, _ in self.listeners:
                self.loop.modify(sock.fileno(), EPOLLIN)

    def close(self) -> None:
        """Stop for good: the listening sockets are the master's (and the next worker's)."""
        self.pause()
        for sock, _ in self.listeners:
            self.loop.remove(sock.fileno())
            sock.close()
        self.listeners = []
