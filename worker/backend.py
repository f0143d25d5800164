"""Connections to backends, and the worker's pool of idle keep-alive ones.

A backend connection stays registered with epoll for its whole life; only the
handler changes hands (`loop.set_handler`), so checking one out of the pool or back
in costs no syscall.  While idle it is watched for reads: a backend that closes an
idle connection (or sends anything unasked) is noticed and the connection dropped,
so a request is rarely sent on a dead one; `reused` tells the exchange that a
failure before any response byte may be retried on a fresh connection.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

from worker.loop import EPOLLIN, EPOLLOUT
from worker.tls import backend_context, handshake_step

POOL_IDLE_TIMEOUT = 60.0   # nginx's upstream keepalive_timeout default
POOL_MAX_IDLE = 64         # idle connections kept per backend per worker


class BackendConnection:
    """`connected` means ready for HTTP: TCP up and, for https/wss, the TLS handshake done."""

    __slots__ = ("sock", "fd", "backend", "mask", "reused", "deadline", "connected", "tcp_up",
                 "handshaking", "tls", "idle_handler")

    def __init__(self, sock: socket.socket, backend, tcp_up: bool):
        self.sock = sock
        self.fd = sock.fileno()
        self.backend = backend
        self.mask = 0
        self.reused = False
        self.tcp_up = tcp_up
        self.tls = backend.tls is not None
        self.handshaking = False
        self.connected = False
        self.deadline = 0.0
        self.idle_handler = None   # bound once, by the pool, for while it sits idle
        if tcp_up:
            self._tcp_ready()

    def _tcp_ready(self) -> None:
        self.tcp_up = True
        if self.tls:
            settings = self.backend.tls
            self.sock = backend_context(settings).wrap_socket(
                self.sock, server_hostname=settings.server_name or self.backend.host,
                do_handshake_on_connect=False)
            self.handshaking = True
        else:
            self.connected = True

    def advance(self) -> int:
        """Drive the connect and the TLS handshake: 0 when ready, else the epoll interest
        to wait for.  Raises OSError (connect) or ssl.SSLError (handshake) on failure."""
        if not self.tcp_up:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise ConnectionError(error, f"connect failed: {os.strerror(error)}")
            self._tcp_ready()
        if self.handshaking:
            wanted = handshake_step(self.sock)
            if wanted:
                return wanted
            self.handshaking = False
            self.connected = True
        return 0

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_connection(backend) -> BackendConnection:
    """Start a non-blocking connect; raises OSError if it fails at once."""
    sock = socket.socket(backend.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    err = sock.connect_ex(backend.sockaddr)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(err, errno.errorcode.get(err, str(err)))
    return BackendConnection(sock, backend, tcp_up=(err == 0))


class BackendPool:
    """Idle keep-alive connections per backend (LIFO: the warmest one first)."""

    def __init__(self, loop):
        self.loop = loop
        self.idle: dict[tuple, list[BackendConnection]] = {}
        self.count = 0
        loop.call_later(POOL_IDLE_TIMEOUT / 4, self._expire)

    def acquire(self, backend, owner_handler, fresh: bool = False) -> BackendConnection:
        """A connection to `backend` handed to `owner_handler`: pooled unless `fresh`."""
        stack = None if fresh else self.idle.get(backend.key)
        if stack:
            conn = stack.pop()
            self.count -= 1
            conn.reused = True
            self.loop.set_handler(conn.fd, owner_handler)
            return conn
        conn = open_connection(backend)
        conn.idle_handler = lambda mask: self._on_idle_event(conn)
        conn.mask = EPOLLOUT if not conn.connected else EPOLLIN
        self.loop.add(conn.fd, conn.mask, owner_handler)
        return conn

    def release(self, conn: BackendConnection) -> None:
        """Take a connection back after a complete exchange; it must be idle (mask IN)."""
        stack = self.idle.setdefault(conn.backend.key, [])
        if len(stack) >= POOL_MAX_IDLE:
            self.discard(conn)
            return
        if conn.mask != EPOLLIN:
            self.loop.modify(conn.fd, EPOLLIN)
            conn.mask = EPOLLIN
        conn.deadline = self.loop.now + POOL_IDLE_TIMEOUT
        stack.append(conn)
        self.count += 1
        self.loop.set_handler(conn.fd, conn.idle_handler)

    def discard(self, conn: BackendConnection) -> None:
        self.loop.remove(conn.fd)
        conn.close()

    def _on_idle_event(self, conn: BackendConnection) -> None:
        """Readable while idle: the backend closed it (or misbehaves). Drop it.
        On TLS, a record without application data (a TLS 1.3 session ticket) is not that."""
        if conn.tls:
            try:
                conn.sock.recv(1)
            except ssl.SSLWantReadError:
                return
            except OSError:
                pass
        stack = self.idle.get(conn.backend.key)
        if stack and conn in stack:
            stack.remove(conn)
            self.count -= 1
        self.discard(conn)

    def _expire(self) -> None:
        now = self.loop.now
        for stack in self.idle.values():
            while stack and stack[0].deadline <= now:
                self.discard(stack.pop(0))
                self.count -= 1
        self.loop.call_later(POOL_IDLE_TIMEOUT / 4, self._expire)

    def close_all(self) -> None:
        for stack in self.idle.values():
            for conn in stack:
                self.discard(conn)
            stack.clear()
        self.count = 0
