"""One client connection: what outlives a request (keep-alive, pipelined bytes, counts).

Theory of operation
-------------------
A client connection is in one state at a time (a new one starts in HEAD):

    IDLE ──bytes──> HEAD ──head parsed──> BUSY ──exchange done, keep-alive──> IDLE (or HEAD
      │               │                     │                               if bytes wait)
      └─ keepalive ───┴── 4xx, timeout ─────┴── close, abort, 101 ──> CLOSED

In BUSY one `worker.exchange.Exchange` carries the request and its response; it owns
the request body (the client's reads go to it while it has one to relay) and the
deadline.  Bytes the client sends ahead (pipelining) wait in `inbuf`, up to READ_AHEAD,
and are parsed when the exchange is done.  Heads that are answered at once (a 404, a
400) are served in a loop, not by recursion, so a burst of pipelined requests costs no
stack; PIPELINED_PER_TURN of them per loop turn, then the connection yields to the others
of its worker (`call_soon`) and is not read until what it has sent is served.

The deadline is the one `loop.timed` entry of the connection: keepalive in IDLE,
client_header in HEAD, the exchange's own while BUSY.  A new connection's client_header runs
from its accept (from the accept of a PROXY header's connection, too) to its complete head,
as nginx's client_header_timeout and Apache's RequestReadTimeout header= do; a keep-alive
one gets a new budget with the first byte of its next request.

Until its first head is complete a connection is listed in the worker's `unserved`
arrivals, and while it waits between requests in `idle` (worker.admission): what a full
worker closes to make room.  `holds` is what it counts in the shared client table (its
place under `limits.per_client.connections`), released when it closes or handed to the
tunnel it becomes.

Memory: what a connection holds is bounded by its head (LimitRequestLine + LimitRequestFields
x LimitRequestFieldSize: about 800 KiB at Apache's defaults, usually a few hundred bytes),
READ_AHEAD bytes read past it, and one read's worth of response kept for a slow client
(SHARED_BUFFER_SIZE): see the README's "Memory" section.
"""

from __future__ import annotations

from conf.readahead import buffered
from tunnel.buffer import SHARED_BUFFER, SHARED_VIEW
from tunnel.endpoint import WOULD_BLOCK, Endpoint
from worker.clientcert import head_writer
from worker.clientmove import MovableClient
from worker.exchange import READ_AHEAD, Exchange
from worker.headreader import HeadReader
from worker.http1 import HEAD_END, HttpError, parse_request
from worker.linger import close_or_linger
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT
from worker.phases import BUSY, CLOSED, HEAD, IDLE

_READABLE = EPOLLIN | EPOLLHUP | EPOLLERR
# Heads one call of `serve_buffered` answers before it lets the loop serve the other
# connections (~30 us each): 256 KiB of pipelined 404s or 429s held the loop ~0.2 s in one
# turn (review 2026-12-03-http1 #2).  nginx, likewise, posts the next pipelined request as
# a new event instead of serving it at once.
PIPELINED_PER_TURN = 16
# What one read takes from a client with no exchange under way: a head and what came with it
# (the start of a body, pipelined heads), all of it parsed or scanned in the same turn.  256
# KiB of a body of 1-byte chunks that came with its head took ~0.1 s to scan (review #3).
# nginx reads heads into 1 KiB then 8 KiB buffers, bodies into 8-16 KiB ones.
HEAD_READ = 16 * 1024
# RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before a request line
# (old clients send one after a POST body).  Apache skips up to 10 (DEFAULT_LIMIT_BLANK_LINES,
# CRLF only when strict, as here); more are a malformed request line (400).
EMPTY_LINES_MAX = 10
_CR = 13


class ClientConnection(MovableClient):
    http2 = False    # the client side is one HTTP/1.1 socket (worker.h2.stream.H2Stream: a stream)
    to_lane = None   # worker.lane.enter, once worker.lane is imported (the C path for what follows)
    lane_first = None    # worker.lane.enter_first: the same for a new connection's first request

    __slots__ = ("worker", "loop", "ep", "client_ip", "proto_line", "xff_line", "head_writer", "state", "deadline",
                 "inbuf", "reader", "requests", "exchange", "eof", "serving", "since", "holds", "proxied",
                 "forwarded", "limiter", "private", "lane")

    def __init__(self, worker, sock, client_ip: bytes, tls: bool = False, holds=(), proxied=None,
                 forwarded: bool = False, deadline: float | None = None, lane_handler=None):
        self.worker = worker
        self.loop = loop = worker.loop
        self.ep = Endpoint(loop, sock)
        self.client_ip = client_ip      # the peer, or the address its PROXY header named
        self.holds = holds              # its entries in the client table (worker.limits)
        self.proxied = proxied          # (src, sport, dst, dport) from a PROXY header, or None
        self.forwarded = forwarded      # from a trusted proxy: each request's X-Forwarded-For names the client
        self.private = None             # pool keys of its PROXY-header backend connections (dropped at close)
        self.limiter = worker.admission.limits     # worker.limits.ClientLimits, None when nothing is configured
        self.since = loop.now           # when it arrived, or last went idle (overload's order)
        # The X-Forwarded-* lines that depend only on the connection, built once.
        self.proto_line = b"X-Forwarded-Proto: https\r\n" if tls else b"X-Forwarded-Proto: http\r\n"
        self.xff_line = b"X-Forwarded-For: " + client_ip + b"\r\n"
        # Its request heads for the backend: with the X-SSL-Client-* fields of its certificate?
        self.head_writer = head_writer(worker, sock, tls, forwarded)
        self.inbuf = bytearray()
        self.reader = None           # the HeadReader of a head that arrived in part
        self.requests = 0
        self.exchange = None
        self.eof = False             # the client shut its sending side
        self.serving = False         # inside the loop that serves buffered heads
        # A new connection owes its head (not IDLE: its first byte must not restart the budget,
        # which a PROXY header's reader may have started: `deadline`).
        self.state = HEAD
        self.deadline = loop.now + worker.timeouts.client_header if deadline is None else deadline
        if lane_handler is None:
            self.ep.register(EPOLLIN, self.on_event)
        else:               # (worker.newcomer's `grow`: in epoll already, its events the lane's)
            self.ep.mask = EPOLLIN
            self.ep.handler = lane_handler
        worker.clients.add(self)
        worker.admission.unserved[self] = None
        loop.timed.add(self)

    def opened(self, tls: bool) -> None:
        """A new connection (not one handed over, worker.clientmove, whose adopter serves what
        it brings): into the keep-alive lane for its first request when the lane can take it;
        else, over TLS, the request that came with the handshake's last flight is read now."""
        if self.lane_first is not None and self.lane_first():
            return                      # the C reads its first head (in the SSL object already, too)
        if tls and buffered(self.ep.sock):
            self.loop.call_soon(self.read_pending)

    @property
    def idle(self) -> bool:
        """Between requests with nothing received or owed."""
        return self.state is IDLE and self.requests > 0 and not self.ep.out

    # == events ===========================================================================
    def on_event(self, mask: int) -> None:
        ep = self.ep
        if mask & EPOLLOUT and ep.out:
            self._flush()
            if self.state is CLOSED:
                return
        if mask & _READABLE:
            if ep.mask & EPOLLIN:
                self._read()
                if ep.tls:
                    self.read_pending()
            elif mask & (EPOLLHUP | EPOLLERR):
                self.close()

    def read_pending(self) -> None:
        """TLS: read what the SSL object holds (decrypted, or read ahead); epoll will not report it."""
        ep = self.ep
        while self.state is not CLOSED and ep.mask & EPOLLIN and buffered(ep.sock):
            self._read()

    def on_deadline(self) -> None:
        if self.state is BUSY:
            self.exchange.on_deadline()
        elif self.state is HEAD and self.inbuf:
            self.refuse(HttpError(408, "timed out reading the request head"))
        else:
            self.close()       # idle keep-alive or silent connection: close quietly

    def _flush(self) -> None:
        try:
            done = self.ep.flush()
        except OSError:
            self.close()
            return
        if self.exchange is not None:
            self.exchange.client_flushed(done)
        else:
            self.update_interest()

    # == reading ============================================================================
    def _read(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.req_framing is not None:
            exchange.read_request_body()     # the request direction belongs to the exchange
            return
        # Bytes read while an exchange runs wait in inbuf: read no more than READ_AHEAD holds.
        size = HEAD_READ if exchange is None else max(READ_AHEAD - len(self.inbuf), 1)
        try:
            n = self.ep.sock.recv_into(SHARED_VIEW, size)
        except WOULD_BLOCK:
            return
        except OSError:
            n = -1
        if n <= 0:
            if exchange is None:
                self.close()        # mid-head or idle: nothing more will come, nothing to answer
            else:
                self.eof = True     # the exchange finishes, and those pipelined; then we close
                exchange.update_interest()
            return
        if exchange is not None or self.inbuf:
            self.inbuf += SHARED_VIEW[:n]
            if exchange is None:
                self.serve_buffered()
            elif len(self.inbuf) >= READ_AHEAD:
                exchange.update_interest()
            return
        if self.state is IDLE:
            self.deadline = self.loop.now + self.worker.timeouts.client_header
        # The usual case: one whole head in one read, nothing after it.  (`>= 0`: a 3-byte
        # read without one finds -1 == n - 4, and "GET" was refused as a whole head.)
        if SHARED_BUFFER.find(HEAD_END, 0, n) == n - 4 >= 0 and self.reader is None:
            try:
                head = parse_request(bytes(SHARED_VIEW[:n]), self.worker.limits)
            except HttpError as error:
                if SHARED_BUFFER[0] == _CR:     # empty lines first, perhaps: `_buffered_head` skips them
                    self.inbuf += SHARED_VIEW[:n]
                    self.serve_buffered()
                else:
                    self.refuse(error)
                return
            self._start(head)
        else:
            self.inbuf += SHARED_VIEW[:n]
            self.serve_buffered()

    def serve_buffered(self) -> None:
        """Serve the heads in `inbuf`, one after another while each is answered at once."""
        if self.serving:
            return
        self.serving = True
        served = 0
        try:
            while self.exchange is None and self.inbuf and self.state is not CLOSED:
                if served == PIPELINED_PER_TURN:
                    # The rest in a later turn; meanwhile reading more would only add to it.
                    self.ep.want(False)
                    self.loop.call_soon(self.serve_buffered)
                    break
                served += 1
                try:
                    head = self._buffered_head()
                except HttpError as error:
                    self.reader = None
                    self.refuse(error)
                    break
                if head is None:
                    self.state = HEAD
                    self.update_interest()
                    break
                self._start(head)
        finally:
            self.serving = False

    def _buffered_head(self):
        """The next complete head in `inbuf` (taken out of it), or None while it is incomplete."""
        inbuf, reader = self.inbuf, self.reader
        if reader is None:
            if inbuf[0] == _CR and not self._skip_empty_lines():
                return None
            end = inbuf.find(HEAD_END)
            if end >= 0:
                raw = bytes(inbuf[:end + 4])
                del inbuf[:end + 4]
                return parse_request(raw, self.worker.limits)
            reader = self.reader = HeadReader(True, self.worker.limits)
        try:
            size = reader.feed(inbuf)
        except HttpError as error:      # refused before it was whole: its line may be
            if error.line is None:
                error.line = self._first_line()
            raise
        if not size:
            return None
        raw = bytes(inbuf[:size])
        del inbuf[:size]
        self.reader = None
        return reader.head(raw)

    def _skip_empty_lines(self) -> bool:
        """Drop up to EMPTY_LINES_MAX CRLFs before a request line: False when nothing else is
        there yet.  Those sent one by one are each dropped as they come; the connection stays
        in HEAD meanwhile, so its head deadline is not restarted by them."""
        inbuf = self.inbuf
        skip = 0
        while skip < 2 * EMPTY_LINES_MAX and inbuf.startswith(b"\r\n", skip):
            skip += 2
        del inbuf[:skip]
        return bool(inbuf) and inbuf != b"\r"       # a lone CR: its LF may follow

    def pipelined_head(self) -> bool:
        """A whole request head waits behind the current exchange.  Once the client has shut
        its sending side, that is what is still answered, as Apache answers it: requests
        pipelined before a FIN each get their response, then the connection closes."""
        return HEAD_END in self.inbuf

    def _start(self, head) -> None:
        (self.worker.admission.idle if self.requests else self.worker.admission.unserved).pop(self, None)
        self.requests += 1
        self.state = BUSY
        self.exchange = exchange = Exchange(self, head)
        exchange.start()

    # == what the exchange tells us =============================================================
    def exchange_done(self, exchange, keep_alive: bool) -> None:
        """The response is delivered (or given up on): logged, then the next request or close."""
        self.exchange = None
        worker = self.worker
        route = exchange.route
        if route is not None and exchange.origin is route.origin is not None:
            worker.pool.warm = route.origin         # where a new connection's first request goes (worker.lane)
        if exchange.holds:
            worker.admission.limits.release(exchange.holds)
            exchange.holds = None
        worker.exchange_done(exchange)
        if self.state is CLOSED:
            return
        if not keep_alive or (self.eof and not self.pipelined_head()):
            # A refused head, a request body left unread, or pipelined bytes dropped: the
            # client may still be sending (worker.linger).
            self.close(linger=exchange.head is None or exchange.body_left or exchange.req_framing is not None
                       or bool(self.inbuf))
            return
        self.state = HEAD if self.inbuf else IDLE
        self.since = now = self.loop.now
        self.deadline = now + worker.timeouts.keepalive
        if worker.stopping and not self.eof and worker.client_between_requests(self):
            return          # a successor serves its next request, or nobody does
        # (Requests pipelined before the client's FIN: it cannot move, so they are served here.)
        worker.admission.idle[self] = None
        if not worker.acceptor.accepting and not worker.stopping:   # full a moment ago: one left,
            self.loop.next_turn(worker.acceptor.resume)                # so accept again
        if self.inbuf:
            self.serve_buffered()
        else:
            ep = self.ep              # update_interest's answer here: no exchange, no EOF (above),
            if ep.out or ep.mask != EPOLLIN:      # and no call when the interest is that already
                self._read_again()
            elif self.to_lane is not None:
                self.to_lane(exchange)

    def refuse(self, error: HttpError) -> None:
        """A head we will not serve: answer its status and close (nothing reaches a backend)."""
        self.worker.log_error("info", f"{self.client_ip.decode()} {error.status}: {error.message}")
        if self.exchange is None:
            self.requests += 1
            self.state = BUSY
            self.exchange = Exchange(self, None)
            if error.line is not None:
                self.exchange.refused_line = error.line
        self.exchange.answer(error.status, error.message)

    def _first_line(self):
        """The request line of the head at the front of `inbuf`, refused before it was whole
        (431 for a field over the limit, found while reading): logged as Apache logs it (it
        was "-", review 2026-12-04-logs #9).  None while the line is not whole or too long."""
        end = self.inbuf.find(b"\r\n", 0, self.worker.limits.request_line + 1)
        return bytes(self.inbuf[:end]) if end > 0 else None

    def update_interest(self) -> None:
        """Between exchanges: read unless closing (the exchange derives it while BUSY)."""
        if self.exchange is not None:
            self.exchange.update_interest()
        elif self.state is not CLOSED:
            if self.eof:
                self.ep.want(False)
            else:
                self._read_again()

    def _read_again(self) -> None:
        """Read the client (again, perhaps after `serve_buffered` paused it).  Over TLS the
        SSL object may hold records read before the pause, which epoll will not report."""
        ep = self.ep
        ep.want(True)
        if ep.tls and buffered(ep.sock):
            self.loop.call_soon(self.read_pending)

    # == endings ==============================================================================
    def handed_over(self) -> None:
        """The socket belongs to a tunnel, or to another worker, now (and our holds with it):
        forget it without closing it."""
        self.state = CLOSED
        self.loop.timed.discard(self)
        self.worker.clients.discard(self)
        self.holds = ()
        self.exchange = None

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): closed at once, its exchange aborted."""
        self.close()

    def close(self, linger: bool = False, cut: bool = False) -> None:
        """Close now; an exchange under way is logged as aborted.  Over TLS, close_notify is
        sent unless a response is cut short: a client reading until the close (a body without
        Content-Length) then sees a truncation, not an end.  `cut`: one is, though no
        exchange of ours says so (the keep-alive lane's, worker.lane).  `linger`: the client
        may still be sending, so its socket is half-closed and drained first (worker.linger)."""
        if self.state is CLOSED:
            return
        complete = self.exchange is None and not cut
        self.state = CLOSED
        self.loop.timed.discard(self)
        worker = self.worker
        worker.clients.discard(self)
        admission = worker.admission
        admission.unserved.pop(self, None)
        admission.idle.pop(self, None)
        if self.exchange is not None:
            self.exchange.abort()
        if self.holds:
            admission.limits.release(self.holds)
            self.holds = ()
        close_or_linger(worker.lingering, self.ep, complete, worker.timeouts.lingering if linger and not self.eof else 0)
        if self.private:
            worker.pool.drop_idle(self.private)
        worker.connection_closed()
