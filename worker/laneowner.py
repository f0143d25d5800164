"""A connection while the keep-alive lane carries it: the Python half of one worker._lane.Lane.

What the C calls (`lane_request` to judge, route and rewrite a head; `lane_done` to count and log
a response; `lane_back` when the C gives the connection back), and Python taking the connection
back at the point it shows (worker.lane says which connections enter, and why).
"""

from __future__ import annotations

import os

from worker.client import ClientConnection
from worker.exchange import Exchange
from worker.http1 import HttpError, parse_request
from worker.laneroute import attach_idle, lane_route
from worker.loop import EPOLLIN
from worker.phases import BUSY, CLOSED, CONNECTING, IDLE, WAITING
from worker.response import process as process_response

PARK = 1.0      # seconds a connection between requests keeps its backend connection pinned

# Why the C gives a connection back (worker/_lane.c's enum), and the lane's states.
BACK_CLIENT_BYTES, BACK_CLIENT_GONE, BACK_BACKEND_IDLE, BACK_RESPONSE, BACK_ABORTED, BACK_SEND, BACK_CUT = range(7)
LANE_IDLE, LANE_WAITING, LANE_RELAYING, LANE_FLUSHING, LANE_GONE = range(5)


class LaneExchange:
    """One exchange the lane carried, as the counters and the access log read an Exchange."""

    __slots__ = ("client", "client_ip", "head", "route", "origin", "mapped", "out", "started", "received",
                 "status", "sent", "head_sent", "aborted", "keep_alive", "resp_started", "holds", "body_left",
                 "req_framing", "counted")

    def __init__(self, client, origin):
        self.client = client
        self.client_ip = client.client_ip
        self.origin = origin
        self.head = self.route = self.mapped = self.out = None
        self.started = 0.0
        self.received = self.status = self.sent = self.head_sent = 0
        self.aborted = self.counted = False      # counted: by the C (worker/_lane_count.c), set with each end
        self.keep_alive = self.resp_started = True
        self.holds = self.req_framing = None
        self.body_left = False


class LaneOwner:
    """The Python half of one Lane: what the C calls, and taking the connection back.  One
    LaneExchange serves all its exchanges in turn (the counters and the log are done with each
    before the next begins)."""

    __slots__ = ("client", "conn", "lane", "record", "target", "route", "mapped", "park", "first_deadline")

    def __init__(self, client, conn):
        self.client = client
        self.conn = conn            # None: a new connection's, until its first request (`_attach`)
        self.lane = None
        self.record = LaneExchange(client, None if conn is None else conn.origin)
        # The last target routed, and where it went: while the routes read nothing but the
        # target (Router.by_target), the next request for it goes the same way.
        self.target = self.route = self.mapped = None
        keepalive = client.worker.timeouts.keepalive
        self.park = PARK if PARK < keepalive else keepalive      # how long it waits in the lane
        # A new connection's first head is due by its client_header deadline (from its accept),
        # whatever the lane does meanwhile; a keep-alive one's by its keepalive timeout.
        self.first_deadline = client.deadline

    # == what the C calls =====================================================================
    def lane_request(self, raw: bytes):
        """A whole request head: the bytes for the backend, or None when Python serves it
        (the connection leaves the lane first)."""
        client = self.client
        try:
            head = parse_request(raw, client.worker.limits)
        except HttpError:
            self.leave()
            client.inbuf += raw         # refused by worker.client, as a head read there is
            client.serve_buffered()
            return None
        return self.carry(head, raw)

    def carry(self, head, raw: bytes):
        """`lane_request` for a head parsed (by worker.newcomer too, before it became this)."""
        client = self.client
        worker = client.worker
        if head.version != "1.1" or head.upgrade is not None or head.chunked \
                or head.content_length or head.method == b"CONNECT" or worker.stopping:
            return self._decline(head)
        target = head.target
        if target != self.target and not self._route(worker.router, head, target):
            return self._decline(head)
        route = self.route
        if self.conn is None and not self._attach(route.origin):
            return self._decline(head)
        (worker.admission.idle if client.requests else worker.admission.unserved).pop(client, None)
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
        if not head.keep_alive:         # its response head says so (the C), then it closes (`lane_done`)
            record.keep_alive = False
            self.lane.closing = 1
        return out

    def _route(self, router, head, target: bytes) -> bool:
        """Route `target` (`lane_route`): then `route` and `mapped` say where."""
        resolved = lane_route(router, head, target, self.conn)
        if resolved is None:
            return False
        route, mapped = resolved
        self.record.route = self.route = route
        self.record.mapped = self.mapped = mapped
        lane = self.lane
        lane.log_route = route.lane_log
        lane.count_at = self.client.worker.metrics.cells(route)
        self.target = target if router.by_target else None
        return True

    def _attach(self, origin) -> bool:
        """A new connection's first request, routed (`_route`): pinned now to an idle
        connection to its route's backend, when one waits."""
        conn = attach_idle(self.client.worker.pool, self.lane, origin)
        if conn is None:
            return False
        self.conn = conn
        self.record.origin = origin
        return True

    def _decline(self, head) -> None:
        """Python serves this request, and the connection, from routing on (worker.exchange).  A
        new connection's: the backend the lane offered it is no longer offered to the next ones
        (worker.lane.enter_first), until an exchange on a route to one backend names one."""
        if not self.client.requests:
            self.client.worker.pool.warm = None
        self.leave()
        self.client._start(head)

    def lane_done(self, status: int, sent: int, head_sent: int, line, reusable: bool, counted: bool) -> None:
        """The response went out whole: counted and logged (worker.client's exchange_done, the
        part of it a connection that stays needs; `line`, its access-log line, when the C wrote
        it; `counted`, for /metrics, when the C did that), and the connection waits for its next
        request, in the lane unless the worker is stopping (worker.client takes it back) or the
        request asked for the close (`_end`); either way the backend connection goes back to the
        pool if `reusable`."""
        record = self.record
        record.status = status
        record.sent = sent
        record.head_sent = head_sent
        record.counted = counted
        client = self.client
        worker = client.worker
        if worker.stopping:
            self.leave(reusable)
            client.exchange_done(record, record.keep_alive)
            return
        if not record.keep_alive:
            self._end(reusable, line)
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
            elif conn is not None:
                client.worker.pool.release(conn)
            if why == BACK_CLIENT_GONE:
                client.close()
            elif why == BACK_CLIENT_BYTES or client.inbuf or client.eof:
                self._serve_bytes(data)     # (what it sent while its backend went: review 2026-12-05-lanehostile #2)
            else:
                client.deadline = self._closing_time()     # not PARK's any more
        self._drain_tls()

    def _end(self, reusable: bool, line) -> None:
        """The response to a request that asked for the close is out: counted and logged, and
        the connection closed as worker.client closes one after its last exchange (lingering
        if the client sent more), straight from the lane (nothing to hand back to a connection
        that ends: 2,659 -> 2,589 bytecodes per connection of S7c's)."""
        client, conn = self.client, self.conn
        _, early, eof = self.lane.detach()
        self.lane = client.lane = None
        client.eof = eof
        client.__class__ = ClientConnection
        if reusable:
            conn.hand_to(conn.on_event)
            client.worker.pool.release(conn)
        else:
            conn.close()
        client.worker.exchange_done(self.record, line)
        client.close(linger=early is not None)

    def on_deadline(self) -> None:
        """The client's deadline (worker.loop's sweep): its keep-alive timeout between requests,
        the route's timeout since the last progress during one."""
        client, lane = self.client, self.lane
        state = lane.state
        if state == LANE_IDLE:
            if client.loop.now >= self._closing_time():
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
            if conn is not None:
                client.worker.pool.release(conn)
        else:
            conn.close()
            self._log_aborted(counts)
        ClientConnection.close(client, linger, cut=state != LANE_IDLE)

    # == taking the connection back ===========================================================
    def leave(self, reusable: bool = True) -> None:
        """Python takes the connection back between two exchanges: the backend connection to
        the pool (closed unless `reusable`)."""
        _, early, eof = self.lane.detach()
        self._restore(early, eof)
        conn = self.conn
        if conn is not None:        # (None: a new connection's lane, left before its first request)
            if reusable:
                self.client.worker.pool.release(conn)
            else:
                conn.close()
        self.client.deadline = self._closing_time()     # not PARK's any more

    def _closing_time(self) -> float:
        """When the connection closes if no request comes: its keepalive timeout after the last
        exchange, or its first head's deadline."""
        client = self.client
        return client.since + client.worker.timeouts.keepalive if client.requests else self.first_deadline

    def kick(self) -> None:
        """A new TLS connection's first head came with the handshake, and waits in its SSL object,
        where epoll will not report it: the C reads it now, or worker.client if the connection
        left the lane since (a stop in that loop turn: review 2026-12-06-handshake #2)."""
        lane = self.lane
        if lane is None:
            self._drain_tls()
        elif lane.state == LANE_IDLE:
            lane.on_client(EPOLLIN)

    def _restore(self, early, eof: bool) -> None:
        client = self.client
        client.lane = None
        client.__class__ = ClientConnection
        client.ep.hand_to(client.on_event)
        if self.conn is not None:
            self.conn.hand_to(self.conn.on_event)
        self.lane = None
        if not client.requests:         # its first head is due when it was, not PARK after the accept
            client.deadline = self.first_deadline
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
        record.counted = False          # (only a response the lane sent whole is the C's to count)
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
