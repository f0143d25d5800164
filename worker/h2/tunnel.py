"""A WebSocket over HTTP/2 (RFC 8441): one stream relayed to one backend connection.

After the backend's `101` (our `Upgrade: websocket` request, with its accept key checked)
the client saw `:status 200`, and the stream's DATA frames carry the WebSocket's bytes
both ways, as `tunnel.Tunnel` relays two sockets:

    backend -> client   read while the stream keeps nothing back (`stream.out`), framed as
                        DATA as the windows allow; what does not fit waits in `stream.out`
                        and the backend is not read until it has gone (`client_flushed`)
    client -> backend   each DATA frame is sent at once; while the backend socket keeps a
                        leftover, the frames' bytes are not acknowledged, so the stream's
                        window closes and it stops (RFC 9113 flow control is the back-pressure;
                        the connection's window opened as they were read: other streams go on)

Half-close: END_STREAM from the client is `shutdown(SHUT_WR)` toward the backend; the
backend's EOF is END_STREAM toward the client; both done, the tunnel closes.  A reset on
either side ends both: RST_STREAM from the client closes the backend connection, a
backend error resets the stream with CONNECT_ERROR (RFC 9113 §8.5).  The route's timeout
is the idle deadline.  One access-log line, with the bytes each way, when it ends.

It cannot be handed to another worker (`movable` is False): the stream lives in this
process's HTTP/2 connection, which stays until its streams end or `graceful_timeout`.
"""

from __future__ import annotations

from conf.readahead import buffered
from tunnel.buffer import SHARED_VIEW
from tunnel.endpoint import CLEAN_EOF, WOULD_BLOCK
from worker.bodies import H2_READ
from worker.h2.fields import response_fields, websocket_accept
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT
from worker.phases import TUNNEL
from worker.regexlimit import RegexTimeout


def tunnel_allowed(worker, head) -> bool:
    """An extended CONNECT only on a route that tunnels its protocol (no route: 404 as usual;
    routes too slow to tell: the exchange's own routing answers 500)."""
    try:
        route, _ = worker.router.resolve(head.target, head)
    except RegexTimeout:
        return True
    return route is None or route.upgrade_header(head) is not None


def switch(stream, ex, resp, rest: bytes) -> None:
    """The backend's 101 to our Upgrade becomes `:status 200` on `stream`, which from now on
    carries the WebSocket's bytes; the exchange ends in TUNNEL."""
    if stream.request.protocol is None:        # only an extended CONNECT becomes a tunnel
        ex.backend_failed(502, "the backend switched protocols on a request that asked for no tunnel")
        return
    if stream.ws_key is not None and resp.get(b"sec-websocket-accept") != websocket_accept(stream.ws_key):
        ex.backend_failed(502, "the backend's Sec-WebSocket-Accept does not match our key")
        return
    fields = response_fields(resp, None, ex.cookie or b"", upgrade=True)
    if not stream.fits(fields):
        ex.answer(502, "The response head is larger than this client takes.")
        return
    if not stream.send_fields(fields, False):
        return
    ex.status = 200
    ex.enter(TUNNEL)
    stream.exchange = None
    stream.tunnel_holds, ex.holds = ex.holds, None     # counted until the tunnel ends
    stream.loop.timed.discard(stream)      # the tunnel has its idle deadline
    stream.tunnel = open_tunnel(stream, ex, rest)


def open_tunnel(stream, ex, rest: bytes):
    """The exchange `ex` (now in TUNNEL) gives its backend connection to a StreamTunnel."""
    worker, head, conn = ex.worker, ex.head, ex.conn
    ex.conn = None
    request = stream.request
    context = {"client": stream.client_ip.decode(), "method": "CONNECT",
               "target": head.target.decode("latin-1"), "version": "2.0", "status": 200,
               "protocol": request.protocol.decode("latin-1"),
               "referer": (head.get(b"referer") or b"").decode("latin-1"),
               "agent": (head.get(b"user-agent") or b"").decode("latin-1"),
               "route": ex.route.name, "backend": ex.origin.name, "head_size": len(head.raw)}
    on_close = worker.stream_tunnel_closed
    if ex.member is not None:        # the member counts the tunnel as busy until it closes
        context["lb"] = worker.lb.key(ex.member)
        on_close = worker.lb.tunnel_closer(ex.member, on_close)
        ex.member = None
    tunnel = StreamTunnel(stream, conn, ex.route.timeout, on_close, rest, context)
    worker.tunnel_opened(tunnel, ex)
    return tunnel


class StreamTunnel:
    movable = False      # never handed to another worker (module docstring)

    __slots__ = ("loop", "stream", "backend", "client_eof", "backend_eof", "bytes_in", "bytes_out", "unacked",
                 "started", "deadline", "idle_timeout", "on_close", "closed", "context")

    def __init__(self, stream, backend, idle_timeout: float, on_close, to_client: bytes, context: dict):
        self.loop = loop = stream.loop
        self.stream = stream
        self.backend = backend
        self.client_eof = stream.request_ended
        self.backend_eof = self.closed = False
        self.bytes_in, self.bytes_out = 0, len(to_client)
        self.unacked = 0                 # client bytes the backend has not taken yet (no WINDOW_UPDATE)
        self.started = loop.now
        self.idle_timeout = idle_timeout
        self.deadline = loop.now + idle_timeout
        self.on_close = on_close
        self.context = context
        loop.timed.add(self)
        backend.hand_to(self.on_backend_event)
        if stream.body:                  # DATA that came before the 101 (the client may send early)
            early, stream.body = bytes(stream.body), bytearray()
            self.unacked, stream.unacked = stream.unacked, 0
            self.bytes_in = len(early)
            self._to_backend(early)
        if self.client_eof and not self.closed and self.backend.out is None:
            self.backend.shutdown_write()   # END_STREAM came early too (else `_backend_drained`)
        if to_client:
            stream.send(to_client)
        self._update_interest()

    def _update_interest(self) -> None:
        if not self.closed:
            self.backend.want(not self.backend_eof and self.stream.out is None)

    # == backend -> client ========================================================================
    def on_backend_event(self, mask: int) -> None:
        backend = self.backend
        if mask & EPOLLOUT and backend.out:
            try:
                drained = backend.flush()
            except OSError as exc:
                self.close(f"send failed: {exc.strerror or exc}", error=True)
                return
            self.deadline = self.loop.now + self.idle_timeout
            if drained:
                self._backend_drained()
        if mask & (EPOLLIN | EPOLLHUP | EPOLLERR) and not self.closed:
            if backend.mask & EPOLLIN:
                self._read()
                while not self.closed and backend.tls and backend.mask & EPOLLIN and buffered(backend.sock):
                    self._read()
            elif mask & EPOLLERR:
                self.close("reset", error=True)
            elif mask & EPOLLHUP:
                backend.unregister()     # FIN after our half-close; `want` adds it back for reading

    def _read(self) -> None:
        try:
            n = self.backend.sock.recv_into(SHARED_VIEW, H2_READ)     # what the stream may keep (bodies.H2_READ)
        except WOULD_BLOCK:
            return
        except CLEAN_EOF:
            n = 0
        except OSError as exc:
            self.close(f"recv failed: {exc.strerror or exc}", error=True)
            return
        self.deadline = self.loop.now + self.idle_timeout
        stream = self.stream
        if n == 0:
            self.backend_eof = True
            if stream.out is None:
                stream.send(b"", True)       # END_STREAM: the backend's half-close
            self._maybe_closed()
            self._update_interest()
            return
        self.bytes_out += n
        stream.send(SHARED_VIEW[:n])
        if stream.out is not None:
            self._update_interest()          # paused until the stream has framed it

    def client_flushed(self, done: bool) -> None:
        """The stream framed what it held for the client."""
        self.deadline = self.loop.now + self.idle_timeout
        if self.backend_eof and self.stream.out is None and not self.stream.complete:
            self.stream.send(b"", True)
            self._maybe_closed()
        self._update_interest()

    # == client -> backend ==========================================================================
    def from_client(self, data: bytes, size: int) -> None:
        """A DATA frame of the stream (`size` with its padding: what flow control counts)."""
        self.deadline = self.loop.now + self.idle_timeout
        self.bytes_in += len(data)
        self.unacked += size
        self._to_backend(data)

    def _to_backend(self, data: bytes) -> None:
        backend = self.backend
        if data:
            try:
                backend.send(data)
            except OSError as exc:
                self.close(f"send failed: {exc.strerror or exc}", error=True)
                return
        if backend.out is None:
            self._acknowledge()
        else:
            self._update_interest()          # EPOLLOUT until it drains, then the window opens

    def _backend_drained(self) -> None:
        self._acknowledge()
        if self.client_eof:
            self.backend.shutdown_write()
        self._update_interest()

    def _acknowledge(self) -> None:
        if self.unacked:
            size, self.unacked = self.unacked, 0
            self.stream.conn.acknowledge(self.stream.id, size)

    def client_ended(self) -> None:
        """END_STREAM from the client: its half of the WebSocket is closed."""
        self.client_eof = True
        if self.backend.out is None:
            self.backend.shutdown_write()
        self._maybe_closed()

    def _maybe_closed(self) -> None:
        if self.client_eof and self.backend_eof and self.stream.complete and not self.closed:
            self.close("closed")

    # == deadlines and closing ========================================================================
    def on_deadline(self) -> None:
        self.close("idle timeout", error=True)

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): the backend closes, the stream is reset."""
        self.close("internal error", error=True)

    def close(self, reason: str, error: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.timed.discard(self)
        self._acknowledge()     # what the backend never took: the stream's window, if h2 has it open
        self.backend.close(notify=not error)     # an error reaches a TLS backend as a truncation
        self.stream.tunnel_closed(error)
        self.on_close(self, reason)
