"""A tunnel: two connected sockets relayed both ways after `101 Switching Protocols`.

Theory of operation
-------------------
Each direction is a copy from one endpoint (the *source*) to the other (the *sink*).
Between two plain sockets it is two `os.splice` calls through one pipe shared by the
whole process (`tunnel.pipes`), so the bytes never enter Python; with TLS on either
side (or MPM_SPLICE=0) it is `recv_into` one buffer shared by the whole process
(`SHARED_VIEW`) and `send` from it.  Only when the sink takes part of what was read
does the remainder become the sink endpoint's `out` (bytes); that direction then stops
reading its source and watches its sink for writability until `out` has drained.  So
an idle or fast-flowing tunnel owns no buffer at all, and a slow sink bounds what we
hold to one read's worth (back-pressure).

Per endpoint, the epoll interest is derived from the state (`Endpoint.want`):
    EPOLLIN   while its direction as a source is open and the other side's `out` is empty
    EPOLLOUT  while its own `out` holds bytes

Half-close: EOF from a source is passed to its sink as `shutdown(SHUT_WR)` once the
sink's `out` (if any) is gone; the other direction keeps flowing until it ends too.  An
error or reset on either socket closes both.  Any traffic pushes the idle deadline.

Where tunnel/_relay.c is built, a tunnel whose sides are both plain sockets is handed to it
once its early bytes are out (tunnel.native): the same rules in C, a third of the user time
per small message.  This module stays the reference, and relays TLS tunnels (and everything
with MPM_NATIVE_RELAY=0).

Everything a tunnel is fits in `__slots__`: two endpoints (sockets and what they hold),
two EOF flags and counters.  That is deliberate: it is what a hand-over to another
process must carry (`detach`, and the `state` argument that resumes one).
"""

from __future__ import annotations

import errno
import importlib.util
import os
import select
from functools import partial

from tunnel import pipes
from tunnel.buffer import SHARED_VIEW
from tunnel.endpoint import CLEAN_EOF, WOULD_BLOCK, Endpoint, send_some

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLHUP = select.EPOLLHUP
EPOLLERR = select.EPOLLERR
_splice = os.splice if pipes.AVAILABLE else None
_SPLICE_FLAGS = pipes.SPLICE_FLAGS
_PIPE = pipes.SHARED_PIPE
_SPLICE_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
# Plain tunnels are relayed in C where tunnel/_relay.c was built (tunnel.native); this module
# stays the reference: TLS tunnels, and everywhere with MPM_NATIVE_RELAY=0.
NATIVE = os.environ.get("MPM_NATIVE_RELAY", "1") != "0" and importlib.util.find_spec("tunnel._relay") is not None


def relay_turns(loop) -> None:
    """Where the C relay is built, it turns `loop` from the start (tunnel.native): every event
    is then dispatched from C, a tunnel's relayed there, so the loop's Python turn is left for
    MPM_NATIVE_RELAY=0."""
    if NATIVE:
        from tunnel import native
        native.relay_of(loop)


def splicing() -> bool:
    """Whether plain sockets still relay through the pipe in this process."""
    return _splice is not None


def stop_splicing() -> None:
    """Every copy of this process goes through the shared buffer from now on."""
    global _splice
    _splice = None


def splice_error(exc: OSError) -> bool:
    """True when `exc` says this kernel or sandbox cannot splice sockets (then stop)."""
    if exc.errno in _SPLICE_UNSUPPORTED:
        stop_splicing()
        return True
    return False


class Tunnel:
    """`client` and `backend` are endpoints of connected non-blocking sockets; the
    tunnel becomes their handler.  `on_close(tunnel, reason)` is called once.

    `state` is None for a new tunnel (early bytes count as traffic) or what `detach`
    returned in another process (the tunnel carries on where that one stopped)."""

    __slots__ = (
        "loop", "client", "backend",
        "client_eof", "backend_eof",        # EOF seen from that side
        "bytes_in", "bytes_out",            # client->backend, backend->client
        "started", "deadline", "idle_timeout", "on_close", "closed", "context", "tls",
        "relay", "slot",                    # the C relay and our place in it (NativeTunnel)
    )

    def __init__(self, loop, client: Endpoint, backend: Endpoint, idle_timeout: float, on_close, *,
                 to_backend: bytes = b"", to_client: bytes = b"", context=None, state: dict | None = None):
        self.loop = loop
        self.client = client
        self.backend = backend
        self.on_close = on_close
        self.closed = False
        self.context = context              # the owner's data (route, request line) for its log line
        self.tls = client.tls or backend.tls
        self.relay = self.slot = None
        if state is None:
            self.client_eof = self.backend_eof = False
            self.bytes_in, self.bytes_out = len(to_backend), len(to_client)
            self.started = loop.now
            self.idle_timeout = idle_timeout
            self.deadline = loop.now + idle_timeout
        else:
            self.client_eof, self.backend_eof = state["client_eof"], state["backend_eof"]
            self.bytes_in, self.bytes_out = state["bytes_in"], state["bytes_out"]
            self.started = loop.now - state["age"]
            self.idle_timeout = state["idle_timeout"]
            self.deadline = loop.now + state["idle_left"]
        loop.timed.add(self)
        client.hand_to(self.on_client_event)
        backend.hand_to(self.on_backend_event)
        # Bytes that arrived behind either head go first, behind what the endpoints hold.
        try:
            if to_backend:
                backend.send(to_backend)
            if to_client:
                client.send(to_client)
        except OSError as exc:
            # Closed on the next turn, not here: our owner counts us open once we are built
            # (worker.tunnel_opened, tunnel_adopted), and `on_close` before that left a closed
            # tunnel in its set for ever and released an adopted tunnel's holds uncounted.
            loop.call_soon(partial(self.close, f"send failed: {exc.strerror or exc}"))
            return
        if NATIVE and not self.tls:
            self._go_native()
            return
        self._update_interest()
        # A TLS side may hold bytes epoll will not report: records read ahead while the exchange
        # waited for its 101, or the rest of a record its last read cut short.
        for source, sink in ((client, backend), (backend, client)):
            if source.pending():
                loop.call_soon(partial(self._resume, source, sink))     # a bound method: faults.contain finds its tunnel

    # -- interest ------------------------------------------------------------------
    def _update_interest(self) -> None:
        """Derive both endpoints' epoll interest from the state (see module docstring)."""
        if not self.closed:
            self.client.want(not self.client_eof and not self.backend.out)
            self.backend.want(not self.backend_eof and not self.client.out)

    # -- events ----------------------------------------------------------------------
    def on_client_event(self, mask: int) -> None:
        client = self.client
        if mask & EPOLLOUT and client.out:
            self._drain(client, self.backend, self.backend_eof)
        if mask & (EPOLLIN | EPOLLHUP | EPOLLERR) and not self.closed:
            if client.mask & EPOLLIN:       # an event comes only while registered: mask is set
                if self.tls or _splice is None:
                    self._copy(client, self.backend, True)
                else:
                    self._splice(client, self.backend, True)
            elif mask & (EPOLLHUP | EPOLLERR):
                self._hangup(mask, client)

    def on_backend_event(self, mask: int) -> None:
        backend = self.backend
        if mask & EPOLLOUT and backend.out:
            self._drain(backend, self.client, self.client_eof)
        if mask & (EPOLLIN | EPOLLHUP | EPOLLERR) and not self.closed:
            if backend.mask & EPOLLIN:
                if self.tls or _splice is None:
                    self._copy(backend, self.client, False)
                else:
                    self._splice(backend, self.client, False)
            elif mask & (EPOLLHUP | EPOLLERR):
                self._hangup(mask, backend)

    def _hangup(self, mask: int, endpoint: Endpoint) -> None:
        """HUP/ERR on a socket we are not reading (its direction is paused on `out`).

        epoll reports both whatever the interest, so leaving the fd registered would
        spin.  An error ends the tunnel.  A plain HUP is the peer's FIN after our own
        half-close: what it sent before is still queued, so take the fd out of epoll
        until the other side's `out` drains; `want` then adds it back for reading."""
        if mask & EPOLLERR:
            self.close("reset")
        else:
            endpoint.unregister()

    def _copy(self, source: Endpoint, sink: Endpoint, upstream: bool) -> None:
        """One read from `source`, passed to `sink`; the remainder stays in `sink.out`.
        A TLS source is read again while it holds decrypted bytes (one read returns at
        most one 16 KiB record, and epoll will not report the rest)."""
        recv_into, sink_sock = source.sock.recv_into, sink.sock
        while True:
            try:
                n = recv_into(SHARED_VIEW)
            except WOULD_BLOCK:
                return
            except CLEAN_EOF:
                n = 0
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
                sent = sink_sock.send(SHARED_VIEW[:n]) if not self.tls else send_some(sink_sock, SHARED_VIEW[:n])
            except WOULD_BLOCK:
                sent = 0
            except OSError as exc:
                self.close(f"send failed: {exc.strerror or exc}")
                return
            if sent < n:
                sink.out = bytes(SHARED_VIEW[sent:n])
                self._update_interest()
                return
            if not self.tls or not source.pending():
                return

    def _splice(self, source: Endpoint, sink: Endpoint, upstream: bool) -> None:
        """`_copy` for two plain sockets: source -> the process's pipe -> sink, the bytes
        never entering Python.  The pipe is left empty: a part the sink did not take is
        read out into `sink.out`, so the back-pressure rules stay those of `_copy`."""
        pipe = _PIPE
        if not pipe.size:
            try:
                pipe.open()
            except OSError:   # out of fds: this copy goes through the shared buffer
                self._copy(source, sink, upstream)
                return
        try:
            n = _splice(source.fd, pipe.w, pipe.size, None, None, _SPLICE_FLAGS)
        except WOULD_BLOCK:
            # Readable, yet nothing to splice: TCP urgent data (MSG_OOB).  Splice stops at
            # the urgent mark for good; recv steps over it, as the copy path and nginx do.
            self._copy(source, sink, upstream)
            return
        except OSError as exc:
            if splice_error(exc):   # a kernel or sandbox without socket splice
                self._copy(source, sink, upstream)
            else:
                self.close(f"recv failed: {exc.strerror or exc}")
            return
        if n == 0:
            # EOF, or the urgent mark once the peer's FIN is in (splice says 0 for both):
            # recv tells them apart.
            self._copy(source, sink, upstream)
            return
        self.deadline = self.loop.now + self.idle_timeout
        if upstream:
            self.bytes_in += n
        else:
            self.bytes_out += n
        try:
            sent = _splice(pipe.r, sink.fd, n, None, None, _SPLICE_FLAGS)
        except WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            pipe.discard()
            self.close(f"send failed: {exc.strerror or exc}")
            return
        if sent < n:
            sink.out = pipe.read_out(n - sent)
            self._update_interest()

    def _drain(self, sink: Endpoint, source: Endpoint, source_eof: bool) -> None:
        try:
            done = sink.flush()
        except OSError as exc:
            self.close(f"send failed: {exc.strerror or exc}")
            return
        self.deadline = self.loop.now + self.idle_timeout
        if not done:
            return
        # The source paused for this leftover may have hit EOF meanwhile: pass it on now.
        if source_eof:
            sink.shutdown_write()
        self._update_interest()
        if source.pending():   # the paused TLS source may hold decrypted bytes
            self.loop.call_soon(partial(self._resume, source, sink))

    def _resume(self, source: Endpoint, sink: Endpoint) -> None:
        if not self.closed and (source.mask or 0) & EPOLLIN:
            self._copy(source, sink, source is self.client)

    def _source_eof(self, sink: Endpoint, upstream: bool) -> None:
        if upstream:
            self.client_eof = True
        else:
            self.backend_eof = True
        if self.client_eof and self.backend_eof:
            self.close("closed")
            return
        sink.shutdown_write()
        self._update_interest()

    # -- deadlines and closing ---------------------------------------------------------
    def on_deadline(self) -> None:
        self.close("idle timeout")

    def abandon(self) -> None:
        """A handler of ours raised (the worker's loop contains it): both sides close."""
        self.close("internal error")

    def close(self, reason: str) -> None:
        """Over TLS, only a tunnel both sides ended ("closed") ends with close_notify: a reset,
        a timeout or a failure reaches the other side as the truncation it is."""
        if self.closed:
            return
        self.closed = True
        self.loop.timed.discard(self)
        clean = reason == "closed"
        self.client.close(notify=clean)
        self.backend.close(notify=clean)
        self.on_close(self, reason)

    # -- hand-over -------------------------------------------------------------------
    @property
    def movable(self) -> bool:
        """A plain tunnel is two sockets and bytes: another process can carry on with it.
        A TLS session lives in this process's memory and cannot move."""
        return not self.tls and not self.closed

    def reattach(self) -> None:
        """Undo `detach` when the other process did not take the tunnel: relay on here."""
        self.closed = False
        self.loop.timed.add(self)
        if self.__class__ is not Tunnel:      # tunnel.native.NativeTunnel
            self._go_native()
        else:
            self._update_interest()

    def _go_native(self) -> None:
        """From now on the C relay moves this tunnel's bytes (tunnel.native), unless it cannot
        take them (epoll refused a socket): then this module relays it."""
        try:
            from tunnel import native
            native.hand_to_relay(self)
        except (ImportError, OSError):
            self._update_interest()

    def detach(self) -> dict:
        """Stop relaying and give up both endpoints; what `state=` needs to resume.

        The fds leave epoll *before* the caller closes its copies: an epoll registration
        belongs to the open file description, which lives on in the receiving process,
        so a registration left behind would keep reporting events here."""
        loop = self.loop
        loop.timed.discard(self)
        self.client.unregister()
        self.backend.unregister()
        self.closed = True
        return {
            "client_eof": self.client_eof, "backend_eof": self.backend_eof,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "idle_timeout": self.idle_timeout, "idle_left": max(self.deadline - loop.now, 0.0),
            "age": loop.now - self.started,
        }

