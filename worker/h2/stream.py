"""One HTTP/2 stream: the client side of one `Exchange`, or of an RFC 8441 tunnel.

The exchange talks to its client side through `worker.clientside.ClientSide`; a
`ClientConnection` is one socket, an `H2Stream` is one stream of a connection, and is
its own endpoint (`ep`): `send` frames DATA as the flow-control windows allow and keeps
the rest in `out`, which holds the exchange's backend reads back exactly as a socket's
leftover does; `want(reading)` is how the exchange asks for request body bytes, which the
stream has buffered from DATA frames (at most the stream's window, since the client gets
WINDOW_UPDATE only for what is handed on).

The request body reaches the HTTP/1.1 backend with a `Content-Length` when the client
sent one, or when END_STREAM came with the head (the whole body is here); else chunked,
each DATA frame one chunk, the client's trailers in the last one.  The response head
comes as the parsed backend head (`send_response`), never as HTTP/1.1 bytes to re-parse;
the body as data (`send`, chunked bodies de-chunked by the framing); the end as
END_STREAM, or the backend's trailers as a HEADERS frame that carries it.

States: not started (head received, waiting for the end of the read it came in) ->
exchange -> finished, or exchange -> tunnel -> finished.  Errors are stream errors:
RST_STREAM, never the connection.
"""

from __future__ import annotations

import h2.exceptions

from worker import bodies
from worker.exchange import Exchange
from worker.h2.fields import (
    Malformed,
    trailer_lines,
    websocket_key,
)
from worker.h2.response import StreamGone, StreamResponse
from worker.h2.tunnel import tunnel_allowed
from worker.http1 import HttpError, parse_request

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, CANCEL, CONNECT_ERROR = 0x0, 0x1, 0x2, 0x8, 0xA


class _FinishedEndpoint:
    """A finished stream's `ep`.  A stream is its own endpoint (`ep = self`), a reference
    cycle that only the cyclic GC would free, and the stream holds its connection, whose h2
    machine holds the HPACK tables: every closed connection would wait for the GC.  This
    stand-in answers as the finished stream did (nothing kept, nothing taken)."""

    __slots__ = ()
    out = None
    tls = False
    fd = -1

    def want(self, reading: bool) -> None:
        pass

    def send(self, data, end: bool = False) -> None:
        pass


FINISHED = _FinishedEndpoint()


class H2Stream(StreamResponse):
    # What `Exchange` reads from a client side that is not a socket (worker.clientside).
    http2 = True
    inbuf = b""          # no pipelined bytes: every request is a stream of its own
    eof = False          # the request's end is END_STREAM, a body matter
    tls = False          # as an endpoint: nothing hidden from epoll (the connection reads TLS)
    fd = -1              # as an endpoint: no socket to splice into

    __slots__ = ("conn", "id", "worker", "loop", "ep", "client_ip", "proto_line", "xff_line", "head_writer", "deadline",
                 "request", "exchange", "tunnel", "out", "blocked", "reading", "feeding", "body", "unacked",
                 "chunked", "received", "request_ended", "trailer_block", "ws_key", "started", "complete",
                 "reset_done", "finished", "tunnel_holds")

    def __init__(self, conn, stream_id: int, request):
        self.conn = conn
        self.id = stream_id
        self.worker = conn.worker
        self.loop = conn.loop
        self.ep = self
        self.client_ip, self.proto_line, self.xff_line = conn.client_ip, conn.proto_line, conn.xff_line
        self.head_writer = conn.head_writer
        self.deadline = 0.0
        self.request = request
        self.exchange = self.tunnel = self.out = self.ws_key = None
        self.blocked = self.reading = self.feeding = self.chunked = self.request_ended = False
        self.started = self.complete = self.reset_done = self.finished = False
        self.body = bytearray()
        self.unacked = self.received = 0
        self.trailer_block = b""
        self.tunnel_holds = None     # an RFC 8441 tunnel's count in the client table (worker.limits)

    # The connection's, for the exchange's per-client limits (worker.policy.admit).
    limiter = property(lambda self: self.conn.limiter)
    holds = property(lambda self: self.conn.holds)
    proxied = property(lambda self: self.conn.proxied)
    forwarded = property(lambda self: self.conn.forwarded)

    # == the request ==============================================================================
    def start(self) -> None:
        """The head and what came with it in one read: route it like any request."""
        self.started = True
        request = self.request
        try:
            framing = self._framing()
            self.ws_key = websocket_key() if (request.protocol or b"").lower() == b"websocket" else None
            raw = request.head(framing, self.ws_key)
        except Malformed as exc:
            self.malformed(str(exc))
            return
        self.loop.timed.add(self)
        try:
            head = parse_request(raw, self.worker.limits)
        except HttpError as error:
            self.worker.log_error("info", f"{self.client_ip.decode()} {error.status}: {error.message}")
            self.exchange = Exchange(self, None)
            if error.status != 414:     # (a line over the limit is "-", as for HTTP/1.1)
                self.exchange.refused_line = self.request_line     # it was "-" (review 2026-12-04-logs #9)
            self.exchange.answer(error.status, error.message)
            return
        self.exchange = exchange = Exchange(self, head)
        if request.protocol is not None and not tunnel_allowed(self.worker, head):
            exchange.answer(405, f"this URL does not tunnel {request.protocol.decode('latin-1')[:20]}")
        else:
            exchange.start()

    def _framing(self) -> bytes:
        """How the backend learns where the body ends (module docstring)."""
        request = self.request
        if request.protocol is not None or request.method == b"CONNECT":
            return b""
        length = request.content_length
        if self.request_ended:
            if length is not None and length != self.received:
                raise Malformed("content-length does not match the DATA frames")
            if length is not None or not self.trailer_block:
                return b"content-length: %d\r\n" % self.received if self.received or length is not None else b""
        elif length is not None:
            return b"content-length: %d\r\n" % length
        self.chunked = True
        if self.body:
            self.body[:0] = b"%x\r\n" % len(self.body)
            self.body += b"\r\n"
        if self.request_ended:      # trailers that came in the same read go as they would later
            self.body += b"0\r\n" + self.trailer_block + b"\r\n"
        return b"transfer-encoding: chunked\r\n"

    def data(self, data: bytes, size: int) -> None:
        """A DATA frame (`size` counts its padding too: what flow control counts)."""
        if self.tunnel is not None:
            self.tunnel.from_client(data, size)
            return
        self.received += len(data)
        length = self.request.content_length
        if length is not None and self.received > length:
            self.conn.acknowledge(self.id, size)
            self.malformed("more DATA than content-length")
            return
        exchange = self.exchange
        if self.finished or (self.started and (exchange is None or (exchange.req_framing is None
                                                                    and self.request.protocol is None))):
            self.conn.acknowledge(self.id, size)      # answered already: the rest is not read
            return
        # (An extended CONNECT's early DATA waits here for its tunnel, within the stream's window.)
        self.unacked += size
        if self.chunked and data:
            self.body += b"%x\r\n" % len(data)
            self.body += data
            self.body += b"\r\n"
        else:
            self.body += data
        if self.reading and not self.feeding:
            self.feeding = True
            self.loop.call_soon(self._feed)

    def trailers(self, headers) -> None:
        try:
            self.trailer_block = trailer_lines(headers)
        except Malformed as exc:
            self.malformed(str(exc))

    def client_ended(self) -> None:
        """END_STREAM: the request is complete (or the tunnel's client half is closed)."""
        self.request_ended = True
        if self.tunnel is not None:
            self.tunnel.client_ended()
            return
        if not self.started:
            return              # start() sees it and frames the body with a Content-Length
        length = self.request.content_length
        if length is not None and length != self.received:
            self.malformed("content-length does not match the DATA frames")
            return
        if self.chunked:
            self.body += b"0\r\n" + self.trailer_block + b"\r\n"
        if self.reading and self.body and not self.feeding:
            self.feeding = True
            self.loop.call_soon(self._feed)

    # == as the exchange's endpoint ===================================================================
    def want(self, reading: bool) -> None:
        """The exchange says whether it takes request body bytes now."""
        self.reading = reading
        if reading and self.body and not self.feeding:
            self.feeding = True
            self.loop.call_soon(self._feed)

    def _feed(self) -> None:
        self.feeding = False
        exchange = self.exchange
        if (exchange is None or self.finished or not self.reading or not self.body
                or exchange.req_framing is None):
            return
        data = bytes(self.body)
        self.body.clear()
        size, self.unacked = self.unacked, 0
        self.conn.acknowledge(self.id, size)
        bodies.push_request(exchange, data)

    def send(self, data, end: bool = False) -> None:
        """Response (or tunnel) bytes: framed as the windows allow, the rest kept in `out`."""
        if self.finished:
            return
        conn = self.conn
        if self.out is not None or (conn.congested and data):    # an empty END_STREAM goes out anyway
            self.out = bytes(data) if self.out is None else b"".join((self.out, data))
            conn.block(self)
            return
        try:
            sent = conn.send_data(self.id, data, end)
        except StreamGone:
            self.reset_by_client()
            return
        except h2.exceptions.ProtocolError as exc:
            self._refused_by_h2(exc)
            return
        if sent < len(data):
            self.out = bytes(data[sent:])
            conn.block(self)
        elif end:
            self.complete = True

    def resume(self) -> None:
        """The connection has room again: frame what we kept; tell the owner once it is out."""
        data, self.out = self.out, None
        if data is None or self.finished:
            return
        try:
            sent = self.conn.send_data(self.id, data, False)
        except StreamGone:
            self.reset_by_client()
            return
        except h2.exceptions.ProtocolError as exc:
            self._refused_by_h2(exc)
            return
        if sent < len(data):
            # A view: the rest of a read of up to 256 KiB, copied per resume, cost ~20 µs for
            # every 1-byte window a client opened (review 2026-12-04-h2-bounds #2).
            self.out = data[sent:] if data.__class__ is memoryview else memoryview(data)[sent:]
            self.conn.block(self)
            return
        owner = self.exchange if self.exchange is not None else self.tunnel
        if owner is not None:
            owner.client_flushed(True)

    # == endings ======================================================================================
    def exchange_done(self, ex, keep_alive: bool) -> None:
        """Logged; the stream ends (END_STREAM, or RST_STREAM NO_ERROR when the client was
        still sending a body we no longer read: RFC 9113 §8.1)."""
        self.exchange = None
        if ex.holds:
            self.conn.limiter.release(ex.holds)
            ex.holds = None
        self.worker.exchange_done(ex)
        if self.finished:
            return
        if ex.aborted:
            self._reset(CANCEL)
        else:
            if not self.complete:
                self._end_response(ex)
            if not self.request_ended:
                self._reset(NO_ERROR)
        self._finish()

    def close(self) -> None:
        """The exchange gives up (backend cut mid-response, a deadline): this stream alone ends."""
        if self.finished:
            return
        self._reset(INTERNAL_ERROR)
        self._abort("closed")

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): this stream alone ends (INTERNAL_ERROR)."""
        self.close()

    def tunnel_closed(self, error: bool) -> None:
        if error:
            self._reset(CONNECT_ERROR)
        self.tunnel = None
        self._finish()

    def reset_by_client(self) -> None:
        """RST_STREAM from the client (or h2 says the stream is gone): stop its work."""
        self.reset_done = True
        self._abort("reset by client")

    def connection_lost(self) -> None:
        self.reset_done = True
        self._abort("connection closed")

    def on_deadline(self) -> None:
        if self.exchange is not None:
            self.exchange.on_deadline()

    @property
    def request_line(self) -> bytes:
        """For the access log: the request as the client sent it (an extended CONNECT is
        converted to a GET for the backend, and logged as the CONNECT it was)."""
        request = self.request
        target = request.path if request.method != b"CONNECT" or request.protocol is not None else request.authority
        return request.method + b" " + (target or b"") + b" HTTP/2.0"

    def read_pending(self) -> None:
        """Never needed (`tls` is False here): the connection reads TLS."""

    def handed_over(self) -> None:
        """Never called: an RFC 8441 tunnel keeps the stream (worker.h2.tunnel)."""

    def _abort(self, reason: str) -> None:
        if self.exchange is not None:
            self.exchange.abort()          # logged; calls exchange_done
        elif self.tunnel is not None:
            self.tunnel.close(reason)
        elif not self.started:
            self._log_unstarted()
        self._finish()

    def _log_unstarted(self) -> None:
        """Reset in the read that brought its HEADERS: never forwarded (the rapid-reset
        defence), but logged, 499, as nginx logs a cancelled stream (the reset budget bounds it)."""
        self.started = True
        try:
            head = parse_request(self.request.head(self._framing(), None), self.worker.limits)
        except (Malformed, HttpError):
            return          # not a request: nothing to log
        self.exchange = Exchange(self, head)
        self.exchange.abort()              # logged; calls exchange_done

    def malformed(self, why: str) -> None:
        self.worker.log_error("info", f"{self.client_ip.decode()} HTTP/2 stream {self.id}: malformed request: {why}")
        self._reset(PROTOCOL_ERROR)
        self._abort("malformed")
        self.conn.spend_reset()     # last: an empty budget closes the connection

    def _refused_by_h2(self, exc: Exception) -> None:
        """h2 refused a frame we asked for: its state and ours differ, a bug of ours.  This
        stream ends (INTERNAL_ERROR), not the worker with every other connection on it."""
        self.worker.log_error("error", f"{self.client_ip.decode()} HTTP/2 stream {self.id}: h2 refused a frame: "
                                       f"{exc!r}; stream reset")
        self.close()

    def _reset(self, code: int) -> None:
        if not self.reset_done:
            self.reset_done = True
            self.conn.reset_stream(self.id, code)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.loop.timed.discard(self)
        self.out = None
        if self.tunnel_holds:
            self.conn.limiter.release(self.tunnel_holds)
            self.tunnel_holds = None
        self.body = bytearray()
        if self.unacked:       # the stream's window, if h2 still has it open: the client may finish sending
            size, self.unacked = self.unacked, 0
            self.conn.acknowledge(self.id, size)
        self.conn.stream_done(self)
        self.ep = FINISHED          # the cycle `ep = self` broken: refcounting frees the stream
