"""A new TLS connection the keep-alive lane carries, as one object, from its accept to the close
after its first response, while that is all it asks for.

Issue #20's client opens a TLS connection per request: API clients without keep-alive, mobile
apps, S7c.  worker.lane's `enter_first` carried its one exchange, but made for it what a
keep-alive connection needs: a ClientConnection (its Endpoint, registration, counters, buffers)
and a LaneOwner with its LaneExchange, about 600 bytecodes of the 2,470 such a connection cost,
and 230 more to close them.  A Newcomer is all of that at once, for as long as the connection
stays this simple: its slots are the exchange the counters and the access log read (as a
LaneExchange's), it owns the Lane, and it closes itself.

Whatever else happens turns it into the ClientConnection and the LaneOwner that `enter_first`
would have made (`grow`), in the state they would be in, with the same Lane, which the LaneOwner
owns from then on; the call that found it out goes on there, so everything it does not do
itself is done by the code that always did it:
- a request that keeps the connection (a pooled API client's), or that the lane would not carry whole
  (a body, an upgrade, a head refused, another route, no idle backend connection);
- anything the C gives back (`lane_back`: a head in pieces, say), or a deadline with a request
  under way;
- a stop (worker.lane's `leave_all`), or a close from outside with a request under way.
A connection that grows before its request is whole (a head in pieces, or refused) joins the
worker's oldest-first list of connections without a request at its end, its `since` unchanged:
for `make_room` it arrived when its first bytes came, not at its handshake (review
2026-12-06-newcomer #1; keeping its place would cost a pass over the list).  One
that sends nothing never grows: it pins no backend connection, so the lane's PARK has nothing
to give back, and it keeps its place until its client_header deadline closes it.
A response after which the client sent more lingers (worker.linger) as worker.client's would.

Its handshake runs in the lane's C (worker/_lane_handshake.c): the rounds through the Python loop,
worker.tls's ServerHandshake and what it handed on to were about 270 bytecodes more.  The C
tells it how the handshake ended (`lane_handshaken`, `lane_handshake_failed`); until then it
waits among the worker's handshakes, as a ServerHandshake would, with the handshake timeout, and
is closed and logged as one.  A client that chose HTTP/2, or a handshake that ends in a stop,
goes on to what a ServerHandshake would have made (`_hand_on`).  A first request that came
with the handshake's last flight is read at the end of that loop turn (`kick`), not at once:
read at once, it cost 3 % more CPU per connection (one saturated worker, median of 16 rounds), the
handshake's OpenSSL and the request's Python taking turns in the caches per connection rather
than per loop turn.

worker.lane's `enter_new` says which connections start as one: what `enter_first` would take
once their handshake is done, with no PROXY header and no per-client limit.

Measured (bench/RESULTS-2026-12-06-newcomer.md, bench/RESULTS-2026-12-06-handshake.md): 2,472 ->
1,988 bytecodes per resumed TLS connection as one object, 1,720 with its handshake in the C;
2,476,141 instructions (nginx: 2,479,151).  One saturated worker: 0.96x nginx's CPU per
connection (median of 6 rounds), 0.95x the tree before the handshake moved; S7c 0.97x (RSA) and
1.03x (ECDSA) nginx's, medians of 3 rounds.  Its close and its /metrics count since (the
descriptor's own close, worker/_lane_count.c): 1,630 bytecodes; S7c 0.97x (RSA) and 1.00x (ECDSA)
nginx's CPU, medians of 10 and 14 rounds (bench/RESULTS-2026-12-06-count.md).
"""

from __future__ import annotations

import os
from _socket import socket as _c_socket

from conf import readahead
from conf.readahead import close_notify
from tunnel.endpoint import Endpoint
from worker.client import HEAD_READ, ClientConnection
from worker.clientcert import head_writer
from worker.http1 import HttpError, parse_request
from worker.laneowner import LANE_IDLE, LaneClient, LaneOwner
from worker.laneroute import attach_idle, lane_route
from worker.linger import close_or_linger
from worker.loop import EPOLLIN
from worker.phases import BUSY
from worker.response import FIRST_READ
from worker.tls import failed_round, handshake_failed

_PROTO_LINE = b"X-Forwarded-Proto: https\r\n"
_close_descriptor = _c_socket.close


class Newcomer:
    """One new TLS connection in the lane, until it is more (module docstring)."""

    http2 = False
    movable = False     # (never left when a hand-over looks: a stop grows it first)
    idle = False        # (nor when idle connections are closed: it has no request behind it)
    # What an exchange's readers find on a LaneExchange and never change on this one.
    aborted = False
    keep_alive = False          # (only a request that closes the connection is carried here)
    resp_started = True
    holds = body_left = req_framing = None

    __slots__ = ("worker", "loop", "sock", "fd", "client_ip", "since", "deadline", "first_deadline", "lane", "conn",
                 "head", "route", "origin", "mapped", "out", "started", "received", "status", "sent", "head_sent",
                 "counted", "grown")

    def __init__(self, worker, sock, client_ip: bytes, lane_type):
        self.worker = worker
        self.loop = loop = worker.loop
        self.sock = sock
        self.fd = fd = sock.fileno()
        self.client_ip = client_ip
        self.since = now = loop.now       # (worker.arrival: a full worker closes the oldest first)
        self.deadline = now + worker.timeouts.handshake
        self.first_deadline = None        # (None: its handshake runs)
        self.conn = self.head = self.grown = None
        self.lane = lane = lane_type(loop.epoll_fd, fd, -1, self, HEAD_READ, FIRST_READ,
                                     readahead.ssl_pointer(sock._sslobj), True)
        access = worker.access
        if access is not None and not access.json:      # its lines in C (worker/_lane_log.c)
            lane.log_client = client_ip + b" - - "
        loop.handlers[fd] = lane.on_client     # (into epoll by the C, when a round has to wait)
        worker.handshakes[self] = None         # (an Arrivals: a set, oldest first)
        loop.timed.add(self)
        loop.turn_end.append(lane.start)       # its first round, after the accept batch (worker/_lane_handshake.c)

    # == its handshake (worker/_lane_handshake.c) =============================================
    def lane_handshaken(self, resumed: bool, buffered: bool) -> None:
        """Done: counted; its first head is due by client_header from now, here, or, for HTTP/2
        or in a stop, where a ServerHandshake would take it on."""
        worker = self.worker
        worker.handshakes.pop(self, None)
        worker.count_handshake(resumed)
        http2 = self.sock._sslobj.selected_alpn_protocol() == "h2"
        if http2 or worker.stopping:
            self._hand_on(http2)
            return
        # Unlike a connection between requests it pins no backend connection while it waits, so
        # the lane's PARK has nothing to give back: it stays until then (and keeps its place
        # among the connections without a request, oldest first).
        self.since = now = self.loop.now        # (as a ClientConnection made now would have it)
        self.deadline = self.first_deadline = now + worker.timeouts.client_header
        worker.clients.add(self)
        worker.admission.unserved[self] = None
        if buffered:            # its request came with the last flight, and waits in the SSL object
            self.loop.call_soon(self.kick)

    def kick(self) -> None:
        """The first head waits in the SSL object, where epoll will not report it: the C reads
        it now, at the end of the loop turn where its handshake ended; or, grown since (a stop
        in that turn), what it grew into reads it."""
        lane = self.lane
        if lane is not None:
            if lane.state == LANE_IDLE:
                lane.on_client(EPOLLIN)
        elif self.grown is not None:
            self.grown.kick()

    def lane_handshake_failed(self, answer: int, error: int) -> None:
        """Failed: logged as worker.tls logs it (`error`: a system call's errno), and closed."""
        handshake_failed(self.worker, self.client_ip,
                         os.strerror(error) if error else failed_round(self.sock._sslobj, answer))
        self.close()

    def _hand_on(self, http2: bool) -> None:
        """To worker.admission's `open_client`, as a ServerHandshake ends: its registration goes
        with it as it stands (loop.pass_on)."""
        loop, lane, fd = self.loop, self.lane, self.fd
        registered = lane.client_mask >= 0
        lane.detach()
        self.lane = None
        loop.timed.discard(self)
        loop.handlers.pop(fd, None)
        if registered:
            loop.pass_on(fd, EPOLLIN, self.sock)
        try:
            self.worker.admission.open_client(self.sock, self.client_ip, True, None, (), http2)
        except BaseException:
            # Closed here, as a ServerHandshake's abandon closes it: this object is done with
            # (`lane` None), and its close() would do nothing (review 2026-12-06-handshake #1).
            self._close(False)
            raise
        finally:
            if registered:
                loop.passed_on(fd)

    @property
    def client(self):
        """The connection, as the access log asks an exchange for it."""
        return self

    # == what the C calls =====================================================================
    def lane_request(self, raw: bytes):
        worker = self.worker
        try:
            head = parse_request(raw, worker.limits)
        except HttpError:
            return self.grow().lane_request(raw)        # refused as worker.client refuses it
        if head.keep_alive or head.version != "1.1" or head.upgrade is not None or head.chunked \
                or head.content_length or head.method == b"CONNECT" or worker.stopping:
            return self.grow().carry(head, raw)
        resolved = lane_route(worker.router, head, head.target, None)
        if resolved is None:
            return self.grow().carry(head, raw)          # (LaneOwner declines it as it always did)
        route, mapped = resolved
        origin = route.origin
        host_line = (b"Host: " + head.host + b"\r\n") if route.preserve_host and head.host else origin.host_line
        out = head_writer(worker, self.sock, True, False)(
            head, mapped, host_line, b"X-Forwarded-For: " + self.client_ip + b"\r\n", _PROTO_LINE, None, False)
        # Nothing that can fail comes after the backend connection is pinned: a fault would
        # leave it with neither the pool nor this connection (review 2026-12-06-newcomer #3).
        lane = self.lane
        conn = attach_idle(worker.pool, lane, origin)
        if conn is None:
            return self.grow().carry(head, raw)
        self.conn = conn
        self.route, self.mapped, self.origin, self.out, self.head = route, mapped, origin, out, head
        lane.log_route = route.lane_log
        lane.count_at = worker.metrics.cells(route)
        worker.admission.unserved.pop(self, None)
        self.started = now = self.loop.now
        self.deadline = now + route.timeout
        self.received = len(raw)
        lane.closing = 1        # its response head says so (the C), then it closes (`lane_done`)
        return out

    def lane_done(self, status: int, sent: int, head_sent: int, line, reusable: bool, counted: bool) -> None:
        """Its response went out whole: counted (`counted`: for /metrics by the C already) and
        logged, the backend connection back to the pool if `reusable`, and the connection closed
        (as worker.laneowner's `_end`)."""
        worker = self.worker
        if worker.stopping:
            self.grow().lane_done(status, sent, head_sent, line, reusable, counted)
            return
        self.status = status
        self.sent = sent
        self.head_sent = head_sent
        self.counted = counted
        _, early, eof = self.lane.detach()
        self.lane = None
        conn = self.conn
        try:
            if reusable:
                conn.hand_to(conn.on_event)
                worker.pool.release(conn)
            else:
                conn.close()
            worker.exchange_done(self, line)
        finally:        # a fault above must not leave the connection open (review 2026-12-06-newcomer #2)
            self._close(early is not None and not eof)

    def lane_back(self, why: int, data: bytes, early, eof: bool, error: int) -> None:
        self.grow().lane_back(why, data, early, eof, error)

    # == deadlines and closes =================================================================
    def on_deadline(self) -> None:
        """Its handshake's deadline, or no head yet at its client_header deadline: closed; a
        request under way: as the LaneOwner deals with it."""
        if self.first_deadline is None:
            handshake_failed(self.worker, self.client_ip, "handshake timed out")
            self.close()
        elif self.head is not None:
            self.grow().on_deadline()
        else:
            self.close()

    def close(self) -> None:
        """Closed from outside (room made, the worker's exit): one with a request under way as
        the LaneOwner closes it (an aborted exchange is logged)."""
        lane = self.lane
        if lane is None:
            return
        if self.head is not None:
            self.grow().client.close()
            return
        lane.detach()
        self.lane = None
        if self.first_deadline is None:         # in its handshake (nothing for a close_notify yet)
            self.worker.handshakes.pop(self, None)
        self._close(False)

    def abandon(self) -> None:
        """worker.faults: a handler raised; the connection ends as a reset would end it."""
        self.close()

    def _close(self, linger: bool) -> None:
        """As worker.client closes a connection after its last exchange: close_notify and close,
        or, when the client sent more after its request, a half-close and a read until it is
        done (worker.linger)."""
        worker, loop = self.worker, self.loop
        loop.timed.discard(self)
        worker.clients.discard(self)
        worker.admission.unserved.pop(self, None)
        if linger:
            ep = Endpoint(loop, self.sock)
            ep.mask = EPOLLIN                   # registered, as the lane leaves it
            close_or_linger(worker.lingering, ep, True, worker.timeouts.lingering)
        else:
            loop.forget(self.fd)                # the close takes it out of epoll
            close_notify(self.sock)             # RFC 8446 §6.1; the peer's is not read for
            try:
                # The descriptor's own close: SSLSocket.close() gets there through three Python
                # calls (socket.py's and ssl.py's), 35 bytecodes.  Its SSL object goes with this
                # object, a moment later, as it would have gone with the SSLSocket.
                _close_descriptor(self.sock)
            except OSError:
                pass
        worker.connection_closed()

    # == becoming a ClientConnection ==========================================================
    def grow(self) -> LaneOwner:
        """Become the ClientConnection and LaneOwner that worker.lane's `enter_first` makes at
        the handshake, in the state they would be in now, the Lane theirs from now on; this
        object is done with (its `lane` None)."""
        worker, loop, lane = self.worker, self.loop, self.lane
        worker.clients.discard(self)
        worker.admission.unserved.pop(self, None)
        loop.timed.discard(self)
        # Its registration stays as it is: EPOLLIN as far as the Endpoint knows, the lane's events.
        client = ClientConnection(worker, self.sock, self.client_ip, True, (), None, False, self.deadline,
                                  lane.on_client)
        client.since = self.since
        owner = LaneOwner(client, self.conn)
        owner.lane = lane
        lane.owner = owner
        owner.first_deadline = self.first_deadline
        if self.head is not None:         # its request is under way in the lane
            record = owner.record
            record.head, record.out, record.started, record.received = self.head, self.out, self.started, self.received
            record.route = owner.route = self.route
            record.mapped = owner.mapped = self.mapped
            record.keep_alive = False
            worker.admission.unserved.pop(client, None)
            client.requests = 1
            client.state = BUSY
        client.lane = owner
        client.__class__ = LaneClient
        self.lane = None
        self.grown = owner
        return owner
