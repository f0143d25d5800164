"""One HTTP/2 client connection: its socket, the `h2` protocol machine, its streams.

Theory of operation
-------------------
`h2` (python-hyper) is Sans-IO: bytes read from the socket go in (`receive_data`) and
come out as events; frames we ask for (`send_headers`, `send_data`, ...) pile up in its
buffer until we take them (`data_to_send`) and write them.  The worker's loop owns the
socket, as for every other connection (`tunnel.endpoint.Endpoint`: what the socket does
not take is kept, and EPOLLOUT is asked for while it is).

Each request is an `H2Stream` (worker.h2.stream), the client side of an ordinary
`worker.exchange.Exchange`: same routing, balancers, backend pool, rewriting and logs.
Streams whose HEADERS arrived in one read are started once that read's events are all
handled, so a stream reset in the same read never reaches a backend.  Request bodies:
the connection's window opens as DATA is read, a stream's as its exchange takes the bytes
(worker.h2.defences).

Writing: what the streams frame during one loop iteration goes out in one `send` at its
end (`schedule_write`), or sooner once WRITE_HIGH bytes are framed.  Flow control: a
stream frames what its window and the connection's allow and keeps the rest (`out`);
while the socket itself has bytes kept (`congested`), streams frame nothing and keep
what they are given.  Either way the stream's exchange stops reading its backend until
`resume` has framed the rest (`blocked`, in FIFO order for fairness): a slow stream
holds at most one backend read beyond its window, and stalls nobody else.

Stopping: `goaway()` says which streams we will still serve (the last one we saw, RFC
9113 §6.8); they finish, and the connection closes once none is left.  h2's own
`close_connection` would end its state machine at once (no more frames on the streams
still running), so our GOAWAY is written as raw bytes behind what h2 has framed.
"""

from __future__ import annotations

import h2.exceptions
import h2.settings

from conf.readahead import buffered
from tunnel.buffer import SHARED_VIEW
from tunnel.endpoint import WOULD_BLOCK, Endpoint
from worker.clientcert import head_writer
from worker.h2 import defences
from worker.h2.defences import Budget
from worker.h2.frames import FOREVER, HANDLERS, NO_ERROR, PREFACE_SIZE, ClientFrames
from worker.h2.machine import goaway_frame, local_settings, new_machine, release
from worker.h2.outflow import StreamOutput
from worker.h2.stream import H2Stream
from worker.linger import close_or_linger
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT

_READABLE = EPOLLIN | EPOLLHUP | EPOLLERR
IDLE_GOAWAY_QUIET = 0.5      # seconds of quiet an idle connection lingers after our GOAWAY


class H2Connection(ClientFrames, StreamOutput):
    """The socket, h2's machine and the streams; what the client sends is `ClientFrames`', what
    the streams frame for it `StreamOutput`'s."""

    def __init__(self, worker, sock, client_ip: bytes, tls: bool, holds=(), proxied=None, forwarded=False):
        self.worker = worker
        self.loop = loop = worker.loop
        self.ep = Endpoint(loop, sock)
        self.client_ip = client_ip
        # Per-client limits (worker.admission), read by every stream's exchange as its client's.
        self.limiter = worker.admission.limits
        self.private = None                    # pool keys of its streams' PROXY-header backend connections
        self.holds = holds                     # this connection's count in the client table
        self.proxied = proxied                 # what a PROXY header carried, or None
        self.forwarded = forwarded             # the peer is a trusted proxy: X-Forwarded-For names the client
        self.proto_line = b"X-Forwarded-Proto: https\r\n" if tls else b"X-Forwarded-Proto: http\r\n"
        self.xff_line = b"X-Forwarded-For: " + client_ip + b"\r\n"
        self.head_writer = head_writer(worker, sock, tls, forwarded)   # worker.clientcert
        self.streams: dict[int, H2Stream] = {}
        self.starting: list[H2Stream] = []     # heads of this read, started after its events
        self.blocked: list[H2Stream] = []      # streams holding data for a window or the socket
        self.max_streams = worker.limits.http2_streams
        self.congested = False                 # the socket has bytes kept: streams frame nothing
        self.framed = 0                        # bytes framed since the last write
        self.turn_at = 0.0                     # the loop turn (its `now`) `turn_framed` counts in
        self.turn_framed = 0
        self.write_due = False
        self.acks: dict[int, int] = {}         # stream id -> body bytes consumed, told to h2 in `write`
        self.data_read = 0                     # DATA bytes read, the connection's window opened in `write`
        self.last_stream = 0                   # the highest stream id we processed
        self.goaway_at: int | None = None      # the last stream id our GOAWAY promised
        self.closed = False
        self.failed = False                    # a write failed: closed on the next loop turn
        self.resets = Budget(defences.RESET_BURST, defences.RESET_RATE, loop.now)
        self.control = Budget(defences.CONTROL_BURST, defences.CONTROL_RATE, loop.now)
        self.updates = Budget(defences.UPDATE_BURST, defences.UPDATE_RATE, loop.now)    # credited by our DATA
        self.in_flight: dict[int, int] = {}    # stream we reset -> DATA bytes the client may still have sent
        self.scan_skip = PREFACE_SIZE          # bytes `charge` skips before the next frame header
        self.scan_head = b""                   # ... or the start of a header the last read cut
        self.reading_soon = False              # `_read_pending` is due (TLS: bytes beyond a turn's)
        self.h2 = machine = new_machine(worker.limits.header_fields)
        codes = h2.settings.SettingCodes
        machine.local_settings = local_settings({
            codes.MAX_CONCURRENT_STREAMS: self.max_streams,
            codes.MAX_HEADER_LIST_SIZE: defences.MAX_HEADER_LIST,
            codes.HEADER_TABLE_SIZE: defences.HPACK_TABLE,
            codes.INITIAL_WINDOW_SIZE: defences.STREAM_WINDOW,
            codes.ENABLE_CONNECT_PROTOCOL: 1,        # RFC 8441: WebSockets as streams
        })
        machine.initiate_connection()
        machine.increment_flow_control_window(defences.CONNECTION_WINDOW - 65535)
        self.deadline = loop.now + worker.timeouts.client_header     # the preface is due
        self.greeted = False                   # the client's preface and SETTINGS are in
        # With no stream open it holds nothing: a full worker may close it for a new client
        # (worker.admission.make_room), idle longest first, as a keep-alive connection.
        self.since = loop.now
        self.idle = worker.admission.idle
        self.idle.add(self)
        worker.h2_connections.add(self)
        loop.timed.add(self)
        self.ep.register(EPOLLIN, self.on_event)
        self.write()
        if worker.stopping:     # it spoke after our graceful stop began: GOAWAY, no stream processed,
            self.goaway()       # so the client sends its requests again on a connection to the new workers
        elif self.ep.tls and not self.closed and buffered(sock):
            loop.call_soon(self._read_pending)

    # == events ===========================================================================
    def on_event(self, mask: int) -> None:
        ep = self.ep
        if mask & EPOLLOUT and ep.out:
            try:
                drained = ep.flush()
            except OSError:
                self.close()
                return
            if drained:
                self.congested = False
                self.resume_blocked()
                self.write()
            else:
                self._update_interest()        # below OUT_HIGH again: read the client again
        if mask & _READABLE and not self.closed:
            if ep.mask & EPOLLIN:
                self._read()
                self._read_pending()
            elif mask & (EPOLLHUP | EPOLLERR):
                self.close()

    def _read_pending(self) -> None:
        """TLS: decrypted bytes the SSL object holds are invisible to epoll.  READ_PER_TURN
        of them a turn; the rest on the next, after the worker's other connections."""
        ep = self.ep
        self.reading_soon = False
        taken = 0
        while ep.tls and not self.closed and ep.mask & EPOLLIN and buffered(ep.sock):
            if taken >= defences.READ_PER_TURN:
                if not self.reading_soon:
                    self.reading_soon = True
                    self.loop.call_soon(self._read_pending)
                return
            taken += self._read()

    def _read(self) -> int:
        """One read of at most READ_PER_TURN bytes (epoll calls again for the rest, after the
        others' turn); how many bytes it took."""
        try:
            n = self.ep.sock.recv_into(SHARED_VIEW, defences.READ_PER_TURN)
        except WOULD_BLOCK:
            return 0
        except OSError:
            n = 0
        if n == 0:          # the client is gone: streams under way are aborted
            self.close()
            return 0
        self._received(SHARED_VIEW[:n])
        return n

    def _received(self, data) -> None:
        if not self.charge(data):       # a budget ran dry: the read is dropped, unparsed
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has framed a GOAWAY with the error code; say why, send it, close.
            self.worker.log_error("info", f"{self.client_ip.decode()} HTTP/2 connection error: {exc}")
            self.write()
            self.close(self.worker.timeouts.lingering)
            return
        if not self.greeted and events:   # from now on idle means no stream (frames keep nothing open)
            self.greeted = True
            if not self.streams:
                self.deadline = self.loop.now + self.worker.timeouts.keepalive
        handlers = HANDLERS
        for event in events:
            handler = handlers.get(event.__class__)
            if handler is not None:
                handler(self, event)
                if self.closed:
                    return
        if self.starting:
            starting, self.starting = self.starting, []
            for stream in starting:
                if not stream.finished:
                    stream.start()
                if self.closed:
                    return
        self.write()

    def on_deadline(self) -> None:
        if self.streams:              # their own deadlines run; this one only counts when idle
            self.deadline = FOREVER
            return
        self.goaway(NO_ERROR)
        self._close_idle()

    # == what the streams ask ===================================================================
    def acknowledge(self, stream_id: int, size: int) -> None:
        """Body bytes consumed: the client may send that many more on the stream (the
        connection's window opened when they were read, `data_read`).  Told to h2 (which sends
        WINDOW_UPDATE per half window) once per loop iteration, in `write`: a WebSocket of
        small messages would otherwise cost an h2 call per message."""
        if size and not self.closed:
            acks = self.acks
            acks[stream_id] = acks.get(stream_id, 0) + size
            self.schedule_write()

    def stream_done(self, stream: H2Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        if stream.blocked:
            stream.blocked = False
            if stream in self.blocked:      # `resume_blocked` may hold it in its own list
                self.blocked.remove(stream)
        if not self.streams and not self.closed:
            if self.goaway_at is not None:
                self.write()
                self._close_idle()
            else:
                self.since = now = self.loop.now
                self.idle.add(self)
                self.deadline = now + self.worker.timeouts.keepalive
                acceptor = self.worker.acceptor
                if not acceptor.accepting and not self.worker.stopping:   # full of requests a moment
                    self.loop.next_turn(acceptor.resume)                   # ago: now one may go for room

    def reset_stream(self, stream_id: int, code: int) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass    # closed already (or h2 will not reset it): nothing more goes on it either way
        # What the client sent before it saw the reset (an upload after an early 401 or 413)
        # is not a flood: at most a stream window of it spends no budget (worker.h2.frames).
        in_flight = self.in_flight
        in_flight[stream_id] = defences.STREAM_WINDOW
        if len(in_flight) > defences.RESETS_REMEMBERED:
            del in_flight[next(iter(in_flight))]
        self.schedule_write()

    # == writing ==================================================================================
    def schedule_write(self) -> None:
        if not self.write_due:
            self.write_due = True
            self.loop.call_soon(self._write_soon)

    def _write_soon(self) -> None:
        self.write_due = False
        self.write()

    def write(self) -> None:
        """Send what h2 has framed; what the socket does not take stays in `ep.out`."""
        if self.closed or self.failed:
            return
        if self.data_read:
            self.h2.credit_connection(self.data_read)
            self.data_read = 0
        if self.acks:
            acks, self.acks = self.acks, {}
            for stream_id, size in acks.items():
                self.h2.credit_stream(stream_id, size)
        data = self.h2.data_to_send()
        self.framed = 0
        if data:
            try:
                self.ep.send(data)
            except OSError:
                # Closed on the next turn, not here: a stream's exchange may be on the stack
                # (a relay framing DATA, `resume_blocked` going through its streams).
                self.congested = self.failed = True
                self.loop.call_soon(self.close)
                return
        self.congested = self.ep.out is not None
        self._update_interest()

    def _update_interest(self) -> None:
        ep = self.ep
        out = ep.out
        reading = out is None or len(out) < defences.OUT_HIGH
        was_paused = not (ep.mask or 0) & EPOLLIN
        ep.want(reading)
        if reading and was_paused and ep.tls and buffered(ep.sock):
            self.loop.call_soon(self._read_pending)     # what TLS held while we did not read

    # == endings ==================================================================================
    def goaway(self, error: int = NO_ERROR) -> None:
        """No new streams: those up to the last one we saw finish (reload, stop, abuse)."""
        if self.closed or self.goaway_at is not None:
            return
        self.goaway_at = self.last_stream
        self.write()
        if self.failed:
            return
        if not self.closed:
            try:
                self.ep.send(goaway_frame(self.last_stream, error))
            except OSError:
                self.failed = True
                self.loop.call_soon(self.close)
                return
        if not self.streams:
            self._close_idle()

    def _close_idle(self) -> None:
        """After our GOAWAY, with no stream left: only a request racing the GOAWAY can be on
        its way (one round trip), so a short linger; a silent client must not hold a stopping
        worker for timeouts.lingering (a reload's old worker waits for lingering sockets)."""
        self.close(min(IDLE_GOAWAY_QUIET, self.worker.timeouts.lingering))

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): closed at once, its streams aborted."""
        self.close()

    def close(self, linger: float = 0.0) -> None:
        """`linger`: seconds of quiet to wait for, half-closed and draining, before the close
        (worker.linger): our GOAWAY ends it while the client may still be sending (frames in
        flight, a body), and it should read the GOAWAY rather than a reset.  0: at once."""
        if self.closed:
            return
        self.closed = True
        self.loop.timed.discard(self)
        self.idle.discard(self)
        for stream in list(self.streams.values()):
            stream.connection_lost()
        self.streams.clear()
        self.blocked.clear()
        release(self.h2)
        close_or_linger(self.worker.lingering, self.ep, True, linger)
        if self.holds:
            self.limiter.release(self.holds)
            self.holds = ()
        self.worker.h2_connections.discard(self)
        if self.private:
            self.worker.pool.drop_idle(self.private)
        self.worker.connection_closed()

