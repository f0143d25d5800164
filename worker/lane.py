"""The keep-alive lane: which connections the C moves (worker/_lane.c), and its Python half.

An HTTP/1.1 client connection whose exchange ended with keep-alive, on a route to one plain
backend, enters the lane with the pooled backend connection that exchange used, pinned to it.
From then on the C reads each request head and each response; the Python runs twice per
request, in `lane_request` (the head judged by worker.http1, routed by worker.routing,
rewritten by the connection's head writer: the same code as in worker.exchange) and in
`lane_done` (counted and logged by the worker's `exchange_done`, as every exchange is; the line
of a combined-format access log comes written from the C, worker/_lane_log.c).
A small keep-alive request: 108,735 -> 47,135 instructions, 48.2 -> 30.9 µs of proxy CPU
under wrk (bench/RESULTS-2026-12-05.md).

A TLS client enters too (`TLS`): the C reads and writes it through its SSL object, found as
conf.readahead finds it, once nothing waits in that object (it would wait unseen by epoll);
whatever the C gives back, the SSL object may hold more behind it, and `_drain_tls` reads it.
HTTPS keep-alive requests (bench S1s): 0.63-0.68x the proxy CPU of the Python path, 1.06-1.26x
nginx's, in two runs (bench/RESULTS-2026-12-05-tls.md).

Whatever the lane does not carry goes back to worker.client and worker.exchange at the point
it shows, with what the C read (`lane_back`): a request it would not route the same way or
that has a body, a head in pieces or pipelined heads, a response of another shape, a backend
that failed before its response.  The connection leaves the lane then; its next keep-alive
exchange may bring it back.  Closes, deadlines and stops take it out too (LaneClient).

The pinned backend connection is that client's while it stays, as HAProxy keeps a server
connection with its session, but only while the client keeps sending: after PARK seconds
without a request the connection leaves the lane and the backend connection goes back to the
pool, whose bound on idle connections then applies (a thousand idle browsers must not hold a
thousand backend connections).  The client's next request comes back through worker.exchange.

MPM_NATIVE_LANE=0, or no compiled worker._lane or worker._heads: every exchange is Python's.
MPM_NATIVE_LANE_TLS=0, or no conf._readahead: TLS clients' are.
"""

from __future__ import annotations

import os

from conf import readahead
from worker.client import HEAD_READ, ClientConnection
from worker.exchange import Exchange
from worker.http1 import HttpError, parse_request
from worker.phases import BUSY, CLOSED, CONNECTING, IDLE, WAITING
from worker.regexlimit import RegexTimeout
from worker.response import FIRST_READ
from worker.response import process as process_response
from worker.routing import routed_target

try:
    from worker import _heads, _lane
    from worker._lane import Lane, set_response_reader
except ImportError:
    Lane = None
NATIVE = Lane is not None and os.environ.get("MPM_NATIVE_LANE", "1") != "0" \
    and os.environ.get("MPM_NATIVE_HEADS", "1") != "0"
if NATIVE:
    set_response_reader(_heads.response)
# TLS clients too: their reads and writes go through their SSL objects, in C (worker/_lane.c).
TLS = NATIVE and os.environ.get("MPM_NATIVE_LANE_TLS", "1") != "0" and readahead.give_tls_io(_lane.install_tls)

PARK = 1.0      # seconds a connection between requests keeps its backend connection pinned

# Why the C gives a connection back (worker/_lane.c's enum), and the lane's states.
BACK_CLIENT_BYTES, BACK_CLIENT_GONE, BACK_BACKEND_IDLE, BACK_RESPONSE, BACK_ABORTED, BACK_SEND, BACK_CUT = range(7)
LANE_IDLE, LANE_WAITING, LANE_RELAYING, LANE_FLUSHING, LANE_GONE = range(5)


class LaneExchange:
    """One exchange the lane carried, as the counters and the access log read an Exchange."""

    __slots__ = ("client", "client_ip", "head", "route", "origin", "mapped", "out", "started", "received",
                 "status", "sent", "head_sent", "aborted", "keep_alive", "resp_started", "holds", "body_left",
                 "req_framing")

    def __init__(self, client, origin):
        self.client = client
        self.client_ip = client.client_ip
        self.origin = origin
        self.head = self.route = self.mapped = self.out = None
        self.started = 0.0
        self.received = self.status = self.sent = self.head_sent = 0
        self.aborted = False
        self.keep_alive = self.resp_started = True
        self.holds = self.req_framing = None
        self.body_left = False


def eligible(client, exchange) -> bool:
    """Whether the lane can carry `client`'s next exchanges, as `exchange` ended them."""
    route, origin, worker = exchange.route, exchange.origin, client.worker
    return (NATIVE and client.__class__ is ClientConnection and origin is not None and origin is route.origin
            and not origin.tls and not origin.proxy_protocol and not route.always_upgrade and not route.reverse
            and client.limiter is None and not client.private and not client.eof
            and (not client.ep.tls or TLS and not client.ep.out and not readahead.buffered(client.ep.sock))
            and not worker.stopping and exchange.head.version == "1.1")


def enter(client, exchange) -> None:
    """`client` has just ended `exchange` with keep-alive and waits for its next request:
    into the lane, with the warmest idle connection to the same backend (most likely the one
    the exchange used), when the lane can carry it."""
    if not eligible(client, exchange):
        return
    conn = client.worker.pool.take_idle(exchange.origin)
    if conn is None:
        return
    owner = LaneOwner(client, conn)
    loop = client.loop
    ep = client.ep
    owner.lane = lane = Lane(loop.fileno(), ep.fd, conn.fd, owner, HEAD_READ, FIRST_READ,
                             readahead.ssl_pointer(ep.sock._sslobj) if ep.tls else 0)
    access = client.worker.access
    if access is not None and not access.json:      # its lines in C (worker/_lane_log.c)
        lane.log_client = client.client_ip + b" - - "
    client.lane = owner
    client.deadline = client.since + owner.park
    client.__class__ = LaneClient
    client.ep.hand_to(lane.on_client)
    conn.hand_to(lane.on_backend)


def leave_all(clients) -> None:
    """A stop: the connections between requests leave the lane now, the others at their
    response head (worker.response then says `Connection: close` unless a successor takes the
    connection) or, already past it, once it is out (`lane_done`): the hand-over finds
    Python's connections only."""
    for client in list(clients):
        if client.__class__ is LaneClient:
            if client.lane.lane.state == LANE_IDLE:
                client.lane.leave()
            else:
                client.lane.lane.stop()       # its response head goes to worker.response


class LaneOwner:
    """The Python half of one Lane: what the C calls, and taking the connection back.  One
    LaneExchange serves all its exchanges in turn (the counters and the log are done with each
    before the next begins)."""

    __slots__ = ("client", "conn", "lane", "record", "target", "route", "mapped", "park")

    def __init__(self, client, conn):
        self.client = client
        self.conn = conn
        self.lane = None
        self.record = LaneExchange(client, conn.origin)
        # The last target routed, and where it went: while the routes read nothing but the
        # target (Router.by_target), the next request for it goes the same way.
        self.target = self.route = self.mapped = None
        keepalive = client.worker.timeouts.keepalive
        self.park = PARK if PARK < keepalive else keepalive      # how long it waits in the lane

    # == what the C calls =====================================================================
    def lane_request(self, raw: bytes):
        """A whole request head: the bytes for the backend, or None when Python serves it
        (the connection leaves the lane first)."""
        client = self.client
        worker = client.worker
        try:
            head = parse_request(raw, worker.limits)
        except HttpError:
            self.leave()
            client.inbuf += raw         # refused by worker.client, as a head read there is
            client.serve_buffered()
            return None
        if head.version != "1.1" or not head.keep_alive or head.upgrade is not None or head.chunked \
                or head.content_length or head.method == b"CONNECT" or worker.stopping:
            return self._decline(head)
        target = head.target
        if target != self.target and not self._route(worker.router, head, target):
            return self._decline(head)
        route = self.route
        worker.admission.idle.pop(client, None)
        client.requests += 1
        client.state = BUSY
        record = self.record
        record.started = now = client.loop.now
        client.deadline = now + route.timeout
        host_line = (b"Host: " + head.host + b"\r\n") if route.preserve_host and head.host else route.origin.host_line
        record.out = out = client.head_writer(head, self.mapped, host_line, client.xff_line, client.proto_line, None,
                                              client.forwarded)
        record.head = head
        record.received = len(raw)
        return out

    def _route(self, router, head, target: bytes) -> bool:
        """Route `target` (worker.exchange's rules): whether its route is one the lane carries,
        to this backend (then `route` and `mapped` say where)."""
        if target[:1] != b"/" or routed_target(target) is not target:
            return False
        try:
            route, mapped = router.resolve(target, head)
        except RegexTimeout:
            return False
        if route is None or route.origin is not self.conn.origin or route.always_upgrade or route.reverse:
            return False
        self.record.route = self.route = route
        self.record.mapped = self.mapped = mapped
        self.lane.log_route = b'"%s" "%s" ' % (route.log_name, route.origin.log_name)
        self.target = target if router.by_target else None
        return True

    def _decline(self, head) -> None:
        """Python serves this request, and the connection, from routing on (worker.exchange)."""
        self.leave()
        self.client._start(head)

    def lane_done(self, status: int, sent: int, head_sent: int, line) -> None:
        """The response went out whole: counted and logged (worker.client's exchange_done, the
        part of it a connection that stays needs; `line`, its access-log line, when the C wrote
        it), and the connection waits for its next request, in the lane unless the worker is
        stopping."""
        record = self.record
        record.status = status
        record.sent = sent
        record.head_sent = head_sent
        client = self.client
        worker = client.worker
        if worker.stopping:
            self.leave()
            client.exchange_done(record, True)
            return
        worker.exchange_done(record, line)
        client.state = IDLE
        client.since = now = client.loop.now
        client.deadline = now + self.park
        worker.admission.idle[client] = None
        if not worker.acceptor.accepting:       # full a moment ago: one left, so accept again
            client.loop.next_turn(worker.acceptor.resume)

    def lane_back(self, why: int, data: bytes, early, eof: bool, error: int) -> None:
        """The C gave the connection back (it has put both sides' interest back to EPOLLIN)."""
        client, conn, record = self.client, self.conn, self.record
        counts = self.lane.counts
        self._restore(early, eof)
        if why == BACK_RESPONSE or why == BACK_SEND:
            self._resume(record, why, data, error)
        elif why == BACK_ABORTED or why == BACK_CUT:
            conn.close()
            if why == BACK_CUT:         # the backend's failure, said as worker.bodies says it
                self._backend_failed(f"backend reset the connection: {os.strerror(error)}" if error
                                     else "backend closed the connection", "response cut")
            self._log_aborted(counts)
            client.close(cut=True)          # TLS: no close_notify, the response is cut short
        else:
            if why == BACK_BACKEND_IDLE:
                conn.close()        # it closed (or sent what nobody asked for), as the pool drops it
            else:
                client.worker.pool.release(conn)
            if why == BACK_CLIENT_GONE:
                client.close()
            elif why == BACK_CLIENT_BYTES or client.inbuf or client.eof:
                self._serve_bytes(data)     # (what it sent while its backend went: review 2026-12-05-lanehostile #2)
            else:
                client.deadline = client.since + client.worker.timeouts.keepalive     # not PARK's any more
        self._drain_tls()

    def on_deadline(self) -> None:
        """The client's deadline (worker.loop's sweep): its keep-alive timeout between requests,
        the route's timeout since the last progress during one."""
        client, lane = self.client, self.lane
        state = lane.state
        if state == LANE_IDLE:
            closing = client.since + client.worker.timeouts.keepalive
            if client.loop.now >= closing:
                client.close()
            else:               # idle for PARK: its backend connection back to the pool
                self.leave()
            return
        deadline = lane.last + self.record.route.timeout
        if deadline > client.loop.now:      # it moved on meanwhile (the C does not push deadlines)
            client.deadline = deadline
        elif state == LANE_WAITING:
            _, early, eof = lane.detach()
            self._restore(early, eof)
            self._exchange_for(self.record).on_deadline()       # 504, as worker.exchange answers
            self._drain_tls()
        else:
            if state == LANE_RELAYING and not lane.holding:     # the backend is the one behind
                self._backend_failed("backend timed out", "504")
            client.close()

    def close(self, linger: bool) -> None:
        """Closed from outside the lane (a deadline, room made, the worker's exit): an exchange
        under way is logged as aborted, as worker.exchange logs one."""
        lane, client, conn = self.lane, self.client, self.conn
        state, counts = lane.state, lane.counts
        _, early, eof = lane.detach()
        self._restore(early, eof)
        if state == LANE_IDLE:
            client.worker.pool.release(conn)
        else:
            conn.close()
            self._log_aborted(counts)
        ClientConnection.close(client, linger, cut=state != LANE_IDLE)

    # == taking the connection back ===========================================================
    def leave(self) -> None:
        """Python takes the connection back between two exchanges: the backend connection to
        the pool."""
        _, early, eof = self.lane.detach()
        self._restore(early, eof)
        client = self.client
        client.worker.pool.release(self.conn)
        client.deadline = client.since + client.worker.timeouts.keepalive     # not PARK's any more

    def _restore(self, early, eof: bool) -> None:
        client = self.client
        client.lane = None
        client.__class__ = ClientConnection
        client.ep.hand_to(client.on_event)
        self.conn.hand_to(self.conn.on_event)
        self.lane = None
        if early:
            client.inbuf += early
        if eof:
            client.eof = True

    def _drain_tls(self) -> None:
        """TLS: what the SSL object still holds behind the bytes the C gave back (read ahead
        with them, where epoll will not report it) is worker.client's now: read at once, as
        worker.client reads after each event of its own (`read_pending`), not left to the
        read that the end of the exchange may or may not make."""
        client = self.client
        if client.ep.tls and client.lane is None and client.state is not CLOSED:
            client.read_pending()

    def _serve_bytes(self, data: bytes) -> None:
        """Bytes that are not one whole head: worker.client reads them as if it had."""
        client = self.client
        if data:
            client.inbuf += data
        if client.state is IDLE:
            client.deadline = client.loop.now + client.worker.timeouts.client_header
        client.serve_buffered()
        if client.eof and client.exchange is None and client.state is not CLOSED:
            client.close()          # what came before the FIN is served; a head in part never ends

    def _exchange_for(self, record) -> Exchange:
        """An Exchange in WAITING for the request the lane sent: worker.exchange carries on."""
        client, conn = self.client, self.conn
        ex = Exchange(client, record.head)
        ex.started = record.started
        ex.route, ex.origin, ex.mapped = record.route, record.origin, record.mapped
        ex.request_copy = record.out          # held whole: a failover sends it again
        client.exchange = ex
        ex.enter(CONNECTING)
        ex.enter(WAITING)
        ex.conn = conn
        conn.owner = ex.on_backend_event
        return ex

    def _resume(self, record, why: int, data: bytes, error: int) -> None:
        """The request went (or failed to) and the response is not the lane's: worker.exchange
        carries on from WAITING with what the C read, as if it had read it."""
        ex = self._exchange_for(record)
        if why == BACK_SEND:
            if error and len(data) == len(record.out):      # none of it left: whole, on a fresh connection
                ex.backend_lost(f"send failed: {os.strerror(error)}", record.out, untouched=True)
                return
            ex.conn.out = data                              # the rest, once the socket takes it
            ex.update_interest()
        elif data:
            ex.respbuf = bytearray(data)
            process_response(ex, ex.respbuf, len(data))
        elif error:
            ex.backend_lost(f"backend reset the connection: {os.strerror(error)}", record.out)
        else:
            ex.backend_lost("backend closed the connection", record.out)
            if ex.phase is WAITING:
                ex.update_interest()

    def abandon(self) -> None:
        """worker.faults: a handler raised; the connection ends as a reset would end it."""
        self.client.close()

    def _backend_failed(self, why: str, what: str) -> None:
        """The error log's line for a backend that failed a response under way (worker.exchange's
        and worker.bodies' words: review 2026-12-05-lanehostile #3)."""
        route = self.record.route
        self.client.worker.log_error("error", f"route {route.name} backend {self.conn.origin.name}: {why} ({what})")

    def _log_aborted(self, counts) -> None:
        record = self.record
        record.status, record.sent, record.head_sent = counts
        record.aborted = True
        record.keep_alive = False
        self.client.worker.exchange_done(record)


class LaneClient(ClientConnection):
    """A client connection while the lane carries it: its deadline, its close and a fault go
    through its LaneOwner (`lane`).  A class of its own, chosen on entry, so that the Python
    path checks nothing."""

    __slots__ = ()
    to_lane = None

    def on_deadline(self) -> None:
        self.lane.on_deadline()

    def close(self, linger: bool = False) -> None:
        if self.state is not CLOSED:
            self.lane.close(linger)

    def abandon(self) -> None:
        self.lane.abandon()

    def detach(self) -> dict:
        self.lane.leave()
        return ClientConnection.detach(self)


# worker.client's exchange_done offers every keep-alive connection between requests here.
ClientConnection.to_lane = enter
