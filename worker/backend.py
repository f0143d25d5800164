"""Backends: what a worker precomputes about each, its connections, and their pool.

An `Origin` is a configured backend (`conf.model.Backend`) with everything a request to
it needs that does not depend on the request, built once per worker: the pool key, the
`Host:` line, the name for logs.  (The configuration object's own properties build
strings and tuples on every call, and hashing a frozen dataclass hashes all its fields.)

A backend connection stays registered with epoll for its whole life, with its own
`on_event` as the handler, which passes events to whoever owns it now (`owner`, an
exchange) or, while it sits in the pool, to the pool: checking one out or back in is an
attribute store, no syscall.  While idle it is watched for reads: a backend that closes an idle connection
(or sends anything unasked) is noticed and the connection dropped, so a request is
rarely sent on a dead one; `reused` tells the exchange that a failure before any
response byte may be retried on a fresh connection.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import ssl
import termios

from conf.readahead import buffered
from tunnel.endpoint import Endpoint
from worker.loop import EPOLLIN, EPOLLOUT
from worker.tls import backend_context, handshake_step

_COUNT = bytearray(4)      # BackendConnection.holds_more's FIONREAD answer
_NONE = bytes(4)
POOL_IDLE_TIMEOUT = 60.0   # nginx's upstream keepalive_timeout default
POOL_MAX_IDLE = 64         # idle connections kept per backend per worker
POOL_MAX_PRIVATE = 4       # ... per backend and PROXY header (one client connection), for connections opened with one


class Origin:
    __slots__ = ("backend", "key", "host_line", "name", "log_name", "origin_bytes", "tls", "proxy_protocol")

    def __init__(self, backend):
        self.backend = backend
        self.key = backend.key
        self.host_line = b"Host: " + backend.host_header.encode("idna") + b"\r\n"
        self.name = backend.origin                 # "http://host:port", for logs
        self.origin_bytes = self.log_name = backend.origin.encode()
        self.tls = backend.tls
        self.proxy_protocol = backend.proxy_protocol    # 1 or 2: a PROXY header opens each connection


class Origins:
    """One `Origin` per configured backend, by identity of the configuration object."""

    def __init__(self):
        self._by_id: dict[int, Origin] = {}

    def __call__(self, backend) -> Origin:
        origin = self._by_id.get(id(backend))
        if origin is None:
            origin = self._by_id[id(backend)] = Origin(backend)
        return origin

    def forget(self, backend) -> None:
        """`backend` is done with (a member that left DNS): by identity, its id may be reused."""
        self._by_id.pop(id(backend), None)


class BackendConnection(Endpoint):
    """`connected` means ready for HTTP: TCP up and, for https/wss, the TLS handshake done."""

    __slots__ = ("origin", "reused", "deadline", "connected", "tcp_up", "handshaking", "owner", "on_idle",
                 "pool_key", "preamble")

    def __init__(self, loop, sock: socket.socket, origin: Origin, tcp_up: bool, preamble: bytes | None = None):
        super().__init__(loop, sock)
        self.origin = origin
        self.preamble = preamble   # a TLS origin's PROXY header: in clear, before the ClientHello
        self.pool_key = origin.key
        self.reused = False
        self.tcp_up = tcp_up
        self.handshaking = False
        self.connected = False
        self.deadline = 0.0
        self.owner = None          # the exchange's event handler while one uses it
        self.on_idle = None        # the pool's, for while it sits idle
        if tcp_up:
            self._tcp_ready()

    def holds_more(self) -> bool:
        """Bytes past the response just read (a backend that sent more than it framed):
        waiting in the socket, or decrypted or read ahead in the SSL object.  FIONREAD, not a
        recv with MSG_PEEK: that raises BlockingIOError in the usual case, and building the
        exception cost ~12,000 instructions per 64 KiB response (+7.6 %)."""
        if self.tls:
            return buffered(self.sock)
        try:
            fcntl.ioctl(self.fd, termios.FIONREAD, _COUNT)
        except OSError:
            return True                # whatever it is, not a connection to reuse
        return _COUNT != _NONE

    def _tcp_ready(self) -> None:
        self.tcp_up = True
        if self.origin.tls:
            if self.preamble:
                self._send_preamble()
            settings = self.origin.tls
            # A FIN without close_notify raises SSLEOFError instead of reading as an EOF: a
            # response body without Content-Length or chunks is whole only with close_notify
            # (RFC 9112 §9.8), so such an ending is a cut (worker.bodies).  In a tunnel it is a
            # failed receive: OpenSSL 3 has failed the connection by then (a decode_error alert
            # to the backend), so nothing more could be sent to it anyway.
            self.sock = backend_context(settings).wrap_socket(
                self.sock, server_hostname=settings.server_name or self.origin.backend.host,
                do_handshake_on_connect=False, suppress_ragged_eofs=False)
            self.tls = True
            self.handshaking = True
        else:
            self.connected = True

    def _send_preamble(self) -> None:
        """The PROXY header goes first on the connection, before TLS, as HAProxy's `send-proxy
        ssl` sends it and nginx's `listen ... ssl proxy_protocol` reads it (mpm.health does
        the same).  At most 232 bytes on a socket that has sent nothing yet: the send buffer
        takes them whole, or the connection is no good."""
        preamble, self.preamble = self.preamble, None
        if self.sock.send(preamble) != len(preamble):
            raise ConnectionError(errno.EAGAIN, "the PROXY header did not fit the new connection's send buffer")

    def on_event(self, mask: int) -> None:
        owner = self.owner
        if owner is not None:
            owner(mask)
        else:
            self.on_idle(self)

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): the exchange using it ends, or, idle,
        it leaves the pool (`on_idle` is the pool's) and closes."""
        if self.owner is not None:
            self.owner.__self__.abandon()
        else:
            self.on_idle.__self__.discard(self)

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


def open_connection(loop, origin: Origin, preamble: bytes | None = None) -> BackendConnection:
    """Start a non-blocking connect; raises OSError if it fails at once.  `preamble`: what a
    TLS origin is sent in clear before its handshake (a PROXY header)."""
    backend = origin.backend
    sock = socket.socket(backend.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    err = sock.connect_ex(backend.sockaddr)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(err, errno.errorcode.get(err, str(err)))
    return BackendConnection(loop, sock, origin, tcp_up=(err == 0), preamble=preamble)


def private_key(origin: Origin, header: bytes) -> tuple:
    """The pool key of a connection to `origin` that began with the PROXY header `header`."""
    return (origin.key, header)


class BackendPool:
    """Idle keep-alive connections per backend (LIFO: the warmest one first).  A connection that
    began with a PROXY header names one client connection to the backend (its address and
    port, and where it came to), so it goes back to a pool of its own, keyed by that header:
    only the same client connection takes it again (HAProxy keeps such connections private to
    their session too).  It waits there `private_idle` (the client's keep-alive timeout, past
    which that client cannot send another request), not POOL_IDLE_TIMEOUT."""

    def __init__(self, loop, private_idle: float = POOL_IDLE_TIMEOUT):
        self.loop = loop
        self.private_idle = private_idle
        self.idle: dict[tuple, list[BackendConnection]] = {}
        # The backend of the last exchange on a route to one backend: worker.lane offers a new
        # client connection an idle connection to it for its first request.
        self.warm: Origin | None = None
        loop.call_later(POOL_IDLE_TIMEOUT / 4, self._expire)

    def acquire(self, origin: Origin, owner_handler, fresh: bool = False, private: bytes | None = None
                ) -> BackendConnection:
        """A connection to `origin` handed to `owner_handler`: pooled unless `fresh`; `private`:
        the PROXY header a connection for one client begins with."""
        key = origin.key if private is None else private_key(origin, private)
        stack = None if fresh else self.idle.get(key)
        if stack:
            conn = stack.pop()
            conn.reused = True
            conn.owner = owner_handler
            return conn
        # a plain origin's PROXY header goes ahead of the request (worker.connecting); a TLS
        # one's before the handshake, in clear
        conn = open_connection(self.loop, origin, private if origin.tls else None)
        conn.pool_key = key
        conn.owner = owner_handler
        conn.on_idle = self._on_idle_event
        conn.register(EPOLLIN if conn.connected else EPOLLOUT, conn.on_event)
        return conn

    def take_idle(self, origin: Origin) -> BackendConnection | None:
        """The warmest idle connection to `origin`, out of the pool for one client (worker.lane
        pins it), or None: no plain one waits with nothing to send."""
        stack = self.idle.get(origin.key)
        if not stack or stack[-1].tls or stack[-1].out or stack[-1].mask != EPOLLIN:
            return None
        conn = stack.pop()
        conn.reused = True
        return conn

    def release(self, conn: BackendConnection) -> None:
        """Take a connection back after a complete exchange; it must be idle.  Over TLS, bytes
        the SSL object holds past the response (epoll will never report them) would answer
        the next request: such a connection is closed instead."""
        if conn.tls and conn.holds_more():
            conn.close()
            return
        stack = self.idle.get(conn.pool_key)
        if stack is None:
            stack = self.idle[conn.pool_key] = []
        elif len(stack) >= (POOL_MAX_IDLE if conn.pool_key is conn.origin.key else POOL_MAX_PRIVATE):
            conn.close()
            return
        if conn.mask != EPOLLIN:       # want(True) of a connection with nothing to send: no call when it is so
            conn.want(True)
        conn.deadline = self.loop.now + (POOL_IDLE_TIMEOUT if conn.pool_key is conn.origin.key else self.private_idle)
        stack.append(conn)
        conn.owner = None

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
        self.discard(conn)

    def discard(self, conn: BackendConnection) -> None:
        """An idle connection that will serve no more: out of the pool, closed."""
        stack = self.idle.get(conn.pool_key)
        if stack and conn in stack:
            stack.remove(conn)
        conn.close()

    def drop_idle(self, keys) -> None:
        """The idle connections under these pool keys can serve nobody any more: a client
        connection's private ones (`private_key`) when it closes, or a member's that left DNS."""
        for key in keys:
            for conn in self.idle.pop(key, ()):
                conn.close()

    def _expire(self) -> None:
        now = self.loop.now
        for key, stack in list(self.idle.items()):
            while stack and stack[0].deadline <= now:
                stack.pop(0).close()
            if not stack:
                del self.idle[key]          # private pools come and go with their clients
        self.loop.call_later(POOL_IDLE_TIMEOUT / 4, self._expire)

    def close_all(self) -> None:
        for stack in self.idle.values():
            for conn in stack:
                conn.close()
            stack.clear()
