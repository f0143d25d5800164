"""A tunnel: two connected sockets spliced both ways after `101 Switching Protocols`.

Theory of operation
-------------------
Each direction is a copy from one socket (the *source*) to the other (the *sink*).
Between two plain sockets it is two `os.splice` calls through one pipe shared by the
whole process (`tunnel.pipes`), so the bytes never enter Python; with TLS on either
side (or MPM_SPLICE=0) it is `recv_into` one buffer shared by the whole process
(`SHARED_VIEW`) and `send` from it.  Only when the sink takes part of what was read
does the remainder become a per-direction *leftover* (bytes); that direction then
stops reading its source and watches its sink for writability until the leftover
has drained.  So an idle or fast-flowing tunnel owns no buffer at all, and a slow
sink bounds what we hold to one read's worth (back-pressure).

Per socket, the epoll interest is derived from the state, never tracked apart:
    EPOLLIN   while its direction as a source is open and has no leftover
    EPOLLOUT  while the other direction has a leftover for it

Half-close: EOF from a source is passed to its sink as `shutdown(SHUT_WR)` once the
leftover (if any) is out; the other direction keeps flowing until it ends too.  An
error or reset on either socket closes both.  Any traffic pushes the idle deadline.

Everything a tunnel is fits in `__slots__`: two sockets, two leftovers, two EOF flags
and counters.  That is deliberate: it is what a hand-over to another process must
carry (see `export_state`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl

from tunnel import pipes
from tunnel.buffer import SHARED_VIEW

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLHUP = select.EPOLLHUP
EPOLLERR = select.EPOLLERR
SHUT_WR = socket.SHUT_WR
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
TLS_WRITE_MAX = 64 * 1024   # OpenSSL wants a want-write retried with the same bytes: keep writes small
_plain_shutdown = socket.socket.shutdown   # SSLSocket.shutdown() would drop the TLS state
_splice = os.splice if pipes.AVAILABLE else None
_SPLICE_FLAGS = pipes.SPLICE_FLAGS
_PIPE = pipes.SHARED_PIPE
_SPLICE_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _stop_splicing() -> None:
    """Every tunnel of this process copies through the shared buffer from now on."""
    global _splice
    _splice = None


def pending_bytes(sock) -> int:
    """Decrypted bytes an SSLSocket holds: epoll cannot see them."""
    return sock.pending() if sock.__class__ is ssl.SSLSocket else 0


def send_some(sock, data) -> int:
    """send(), in TLS-record-sized pieces for an SSLSocket; returns what went out."""
    if sock.__class__ is not ssl.SSLSocket:
        return sock.send(data)
    total, size = 0, len(data)
    view = memoryview(data)
    while total < size:
        try:
            total += sock.send(view[total:total + TLS_WRITE_MAX])
        except _WOULD_BLOCK:
            if total == 0:
                raise
            break
    return total


class Tunnel:
    """`client` and `backend` are connected non-blocking sockets.

    `loop` needs `add(fd, events, handler)`, `modify(fd, events)`, `remove(fd)`,
    a `now` attribute and a `timed` set; `on_close(tunnel, reason)` is called once.
    """

    __slots__ = (
        "loop", "client", "backend", "cfd", "bfd",
        "to_backend", "to_client",          # leftovers (bytes) or None
        "client_eof", "backend_eof",        # EOF seen from that side
        "cmask", "bmask",                   # current epoll interest, None = not registered
        "bytes_in", "bytes_out",            # client->backend, backend->client
        "started", "deadline", "idle_timeout", "on_close", "closed", "context", "tls",
    )

    def __init__(self, loop, client: socket.socket, backend: socket.socket, idle_timeout: float,
                 on_close, *, to_backend: bytes = b"", to_client: bytes = b"", context=None):
        self.loop = loop
        self.client = client
        self.backend = backend
        self.cfd = client.fileno()
        self.bfd = backend.fileno()
        self.to_backend = None
        self.to_client = None
        self.client_eof = False
        self.backend_eof = False
        self.cmask = None
        self.bmask = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = loop.now
        self.idle_timeout = idle_timeout
        self.deadline = loop.now + idle_timeout
        self.on_close = on_close
        self.closed = False
        self.context = context              # the owner's data (route, request line) for its log line
        self.tls = client.__class__ is ssl.SSLSocket or backend.__class__ is ssl.SSLSocket
        loop.timed.add(self)
        # Bytes that arrived behind either head go first, through the normal path.
        if to_backend:
            self.to_backend = to_backend
            self.bytes_in += len(to_backend)
        if to_client:
            self.to_client = to_client
            self.bytes_out += len(to_client)
        self._flush_early()

    def _flush_early(self) -> None:
        for attr, sock in (("to_backend", self.backend), ("to_client", self.client)):
            data = getattr(self, attr)
            if data:
                try:
                    sent = send_some(sock, data)
                except _WOULD_BLOCK:
                    sent = 0
                except OSError as exc:
                    self.close(f"send failed: {exc.strerror or exc}")
                    return
                setattr(self, attr, data[sent:] or None)
        self._update_interest()

    # -- interest ------------------------------------------------------------------
    def _update_interest(self) -> None:
        """Derive both sockets' epoll interest from the state (see module docstring)."""
        if self.closed:
            return
        cmask = (0 if self.client_eof or self.to_backend else EPOLLIN) | (EPOLLOUT if self.to_client else 0)
        bmask = (0 if self.backend_eof or self.to_client else EPOLLIN) | (EPOLLOUT if self.to_backend else 0)
        loop = self.loop
        if cmask != self.cmask and (cmask or self.cmask is not None):
            if self.cmask is None:
                loop.add(self.cfd, cmask, self.on_client_event)
            else:
                loop.modify(self.cfd, cmask)
            self.cmask = cmask
        if bmask != self.bmask and (bmask or self.bmask is not None):
            if self.bmask is None:
                loop.add(self.bfd, bmask, self.on_backend_event)
            else:
                loop.modify(self.bfd, bmask)
            self.bmask = bmask

    # -- events ----------------------------------------------------------------------
    def on_client_event(self, mask: int) -> None:
        if mask & EPOLLOUT and self.to_client:
            self._drain(self.client, "to_client")
        if mask & (EPOLLIN | EPOLLHUP | EPOLLERR) and not self.closed:
            if self.cmask & EPOLLIN:
                if self.tls or _splice is None:
                    self._copy(self.client, self.backend, True)
                else:
                    self._splice(self.cfd, self.bfd, True)
            elif mask & (EPOLLHUP | EPOLLERR):
                self._hangup(mask, True)

    def on_backend_event(self, mask: int) -> None:
        if mask & EPOLLOUT and self.to_backend:
            self._drain(self.backend, "to_backend")
        if mask & (EPOLLIN | EPOLLHUP | EPOLLERR) and not self.closed:
            if self.bmask & EPOLLIN:
                if self.tls or _splice is None:
                    self._copy(self.backend, self.client, False)
                else:
                    self._splice(self.bfd, self.cfd, False)
            elif mask & (EPOLLHUP | EPOLLERR):
                self._hangup(mask, False)

    def _hangup(self, mask: int, client_side: bool) -> None:
        """HUP/ERR on a socket we are not reading (its direction is paused on a leftover).

        epoll reports both whatever the interest, so leaving the fd registered would
        spin.  An error ends the tunnel.  A plain HUP is the peer's FIN after our own
        half-close: what it sent before is still queued, so take the fd out of epoll
        until the leftover drains; `_update_interest` then adds it back for reading."""
        if mask & EPOLLERR:
            self.close("reset")
            return
        if client_side:
            self.loop.remove(self.cfd)
            self.cmask = None
        else:
            self.loop.remove(self.bfd)
            self.bmask = None

    def _copy(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        """One read from `source`, passed to `sink`; the remainder becomes a leftover.
        A TLS source is read again while it holds decrypted bytes (one read returns at
        most one 16 KiB record, and epoll will not report the rest)."""
        while True:
            try:
                n = source.recv_into(SHARED_VIEW)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self.close(f"recv failed: {exc.strerror or exc}")
                return
            self.deadline = self.loop.now + self.idle_timeout
            if n == 0:
                self._source_eof(sink, upstream)
                return
            if upstream:
                self.bytes_in += n
            else:
                self.bytes_out += n
            try:
                sent = sink.send(SHARED_VIEW[:n]) if not self.tls else send_some(sink, SHARED_VIEW[:n])
            except _WOULD_BLOCK:
                sent = 0
            except OSError as exc:
                self.close(f"send failed: {exc.strerror or exc}")
                return
            if sent < n:
                leftover = bytes(SHARED_VIEW[sent:n])
                if upstream:
                    self.to_backend = leftover
                else:
                    self.to_client = leftover
                self._update_interest()
                return
            if not self.tls or not pending_bytes(source):
                return

    def _copy_way(self, upstream: bool) -> None:
        if upstream:
            self._copy(self.client, self.backend, True)
        else:
            self._copy(self.backend, self.client, False)

    def _splice(self, source_fd: int, sink_fd: int, upstream: bool) -> None:
        """`_copy` for two plain sockets: source -> the process's pipe -> sink, the bytes
        never entering Python.  The pipe is left empty: a part the sink did not take is
        read out into the leftover, so the leftover rules stay those of `_copy`."""
        pipe = _PIPE
        if not pipe.size:
            try:
                pipe.open()
            except OSError:   # out of fds: this copy goes through the shared buffer
                self._copy_way(upstream)
                return
        try:
            n = _splice(source_fd, pipe.w, pipe.size, None, None, _SPLICE_FLAGS)
        except _WOULD_BLOCK:
            # Readable, yet nothing to splice: TCP urgent data (MSG_OOB).  Splice stops at
            # the urgent mark for good; recv steps over it, as the copy path and nginx do.
            self._copy_way(upstream)
            return
        except OSError as exc:
            if exc.errno in _SPLICE_UNSUPPORTED:   # a kernel or sandbox without socket splice
                _stop_splicing()
                self._copy_way(upstream)
                return
            self.close(f"recv failed: {exc.strerror or exc}")
            return
        if n == 0:
            # EOF, or the urgent mark once the peer's FIN is in (splice says 0 for both):
            # recv tells them apart.
            self._copy_way(upstream)
            return
        self.deadline = self.loop.now + self.idle_timeout
        if upstream:
            self.bytes_in += n
        else:
            self.bytes_out += n
        try:
            sent = _splice(pipe.r, sink_fd, n, None, None, _SPLICE_FLAGS)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            pipe.discard()
            self.close(f"send failed: {exc.strerror or exc}")
            return
        if sent < n:
            leftover = pipe.read_out(n - sent)
            if upstream:
                self.to_backend = leftover
            else:
                self.to_client = leftover
            self._update_interest()

    def _drain(self, sink: socket.socket, attr: str) -> None:
        data = getattr(self, attr)
        try:
            sent = send_some(sink, data)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            self.close(f"send failed: {exc.strerror or exc}")
            return
        self.deadline = self.loop.now + self.idle_timeout
        if sent < len(data):
            setattr(self, attr, data[sent:])
            return
        setattr(self, attr, None)
        # The source paused for this leftover may have hit EOF meanwhile: pass it on now.
        if attr == "to_backend" and self.client_eof:
            self._shutdown(self.backend)
        elif attr == "to_client" and self.backend_eof:
            self._shutdown(self.client)
        self._update_interest()
        if self.tls:   # the source paused for this leftover may hold decrypted bytes
            source = self.client if attr == "to_backend" else self.backend
            if pending_bytes(source):
                self.loop.call_soon(lambda: self._resume(attr == "to_backend"))

    def _resume(self, upstream: bool) -> None:
        if not self.closed and ((self.cmask or 0) if upstream else (self.bmask or 0)) & EPOLLIN:
            self._copy_way(upstream)

    def _source_eof(self, sink: socket.socket, upstream: bool) -> None:
        if upstream:
            self.client_eof = True
        else:
            self.backend_eof = True
        if self.client_eof and self.backend_eof:
            self.close("closed")
            return
        self._shutdown(sink)
        self._update_interest()

    def _shutdown(self, sink: socket.socket) -> None:
        try:
            _plain_shutdown(sink, SHUT_WR)
        except OSError:
            pass   # the peer already went away; its own EOF or error will end the tunnel

    # -- deadlines and closing ---------------------------------------------------------
    def on_deadline(self) -> None:
        self.close("idle timeout")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        loop.timed.discard(self)
        for fd, mask, sock in ((self.cfd, self.cmask, self.client), (self.bfd, self.bmask, self.backend)):
            if mask is not None:
                loop.remove(fd)
            try:
                sock.close()
            except OSError:
                pass
        self.on_close(self, reason)

    # -- hand-over -------------------------------------------------------------------
    @property
    def movable(self) -> bool:
        """A plain tunnel is two sockets and bytes: another process can carry on with it.
        A TLS session lives in this process's memory and cannot move."""
        return not self.tls and not self.closed

    def detach(self) -> tuple[socket.socket, socket.socket, dict]:
        """Stop relaying and give up both sockets with everything needed to resume.

        The fds leave epoll *before* the caller closes its copies: an epoll registration
        belongs to the open file description, which lives on in the receiving process,
        so a registration left behind would keep reporting events here."""
        loop = self.loop
        loop.timed.discard(self)
        for fd, mask in ((self.cfd, self.cmask), (self.bfd, self.bmask)):
            if mask is not None:
                loop.remove(fd)
        self.closed = True
        state = {
            "client_eof": self.client_eof, "backend_eof": self.backend_eof,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "idle_timeout": self.idle_timeout, "idle_left": max(self.deadline - loop.now, 0.0),
            "age": loop.now - self.started,
        }
        return self.client, self.backend, state

    @classmethod
    def resume(cls, loop, client: socket.socket, backend: socket.socket, state: dict, on_close,
               to_backend: bytes = b"", to_client: bytes = b"", context=None) -> Tunnel:
        """The receiving side of `detach`: carry on exactly where the other process stopped."""
        tunnel = cls.__new__(cls)
        tunnel.loop = loop
        tunnel.client, tunnel.backend = client, backend
        tunnel.cfd, tunnel.bfd = client.fileno(), backend.fileno()
        tunnel.to_backend = to_backend or None
        tunnel.to_client = to_client or None
        tunnel.client_eof = state["client_eof"]
        tunnel.backend_eof = state["backend_eof"]
        tunnel.cmask = tunnel.bmask = None
        tunnel.bytes_in, tunnel.bytes_out = state["bytes_in"], state["bytes_out"]
        tunnel.started = loop.now - state["age"]
        tunnel.idle_timeout = state["idle_timeout"]
        tunnel.deadline = loop.now + state["idle_left"]
        tunnel.on_close = on_close
        tunnel.closed = False
        tunnel.context = context
        tunnel.tls = False
        loop.timed.add(tunnel)
        tunnel._update_interest()
        return tunnel
