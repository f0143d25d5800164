"""One HTTP exchange: a request, routed and sent to a backend, and its response.

Theory of operation
-------------------
A fresh `Exchange` is made for every request, so nothing is reset by hand.  Its
`phase` follows the response; every change goes through `enter`, checked against
`NEXT` (the table below), which also sets the deadline each phase runs under:

    ROUTING ──> CONNECTING ──connected──> WAITING ──head──> RELAYING ──body read──> FLUSHING ──> DONE
       │            │  ^ failover, retry     │  └──101──> TUNNEL                        ^
       └────────────┴──────── our own answer (404, 503, 4xx, 502, 504) ─────────────────┘

The request body runs beside the response (`req_framing`, None once it is all sent):
a backend may answer before the client finished sending.  FLUSHING means the response
is complete on our side and waits for the client to take the rest (`client.ep.out`);
a response the client took whole as it was read goes from WAITING or RELAYING straight
to DONE (most small ones: one transition fewer).  DONE means logged.  The backend
connection goes back to the pool only when both directions ended cleanly (`reusable`,
and no request body left).  Our own answers, and which one a deadline gets, are
worker.ownanswer's.

Bytes move through the worker's shared buffer, or between two plain sockets through
`os.splice` (`worker.bodies`); an endpoint keeps a leftover only after a partial send,
and while one exists the direction feeding it stops reading (back-pressure).  Epoll
interest is derived from the state in `update_interest`, never tracked apart.
"""

from __future__ import annotations

from functools import partial

from conf.readahead import buffered
from tunnel.endpoint import EPOLLIN, EPOLLOUT
from worker import bodies, connecting, ownanswer, policy, response, routing
from worker.loop import EPOLLERR, EPOLLHUP
from worker.phases import CONNECTING, DONE, FLUSHING, NEXT, PHASES, RELAYING, ROUTING, TUNNEL, WAITING
from worker.regexlimit import RegexTimeout

READ_AHEAD = 64 * 1024          # pipelined bytes we hold before we stop reading a client

_BACKEND_READS = (WAITING, RELAYING)


class Exchange:
    __slots__ = (
        "client", "worker", "loop", "head", "phase", "started",
        "route", "origin", "member", "cookie", "tried", "upgrade",    # where it goes (failover moves it)
        "conn", "req_framing", "request_copy", "body_prefix", "retried",
        "reader", "respbuf", "resp_framing", "status", "resp_started",
        "keep_alive", "reusable", "sent", "head_sent", "received", "aborted", "mapped", "body_left",
        "client_ip", "holds",      # who the client is for this request; what it counts in the client table
        # The route whose policy refused the request (worker.policy), for its log line and
        # counters only: `route` stays None, so the refusal flushes under the keep-alive
        # deadline, not the route's.  Set only then, so read with getattr (no store per request).
        "refused_by",
        "refused_line",     # the request line of a head refused whole (no `head`): logged only
        "interims",         # 1xx heads relayed (worker.response.MAX_INTERIM): set only then, as refused_by
    )
    counted = False         # (for /metrics by the lane's C: never one of these; worker.process's exchange_done)

    def __init__(self, client, head):
        self.client = client
        self.worker = client.worker
        self.loop = client.loop
        self.head = head
        self.client_ip = client.client_ip
        self.phase = ROUTING
        self.started = client.loop.now
        self.route = self.origin = self.member = self.cookie = self.upgrade = self.holds = None
        self.tried = ()
        self.conn = self.req_framing = self.request_copy = self.reader = self.respbuf = self.resp_framing = None
        self.body_prefix = b""
        self.mapped = b"/"
        self.retried = self.resp_started = self.aborted = self.body_left = False
        self.keep_alive = head is not None and head.keep_alive
        self.reusable = True
        self.status = self.sent = self.head_sent = 0
        self.received = len(head.raw) if head is not None else 0

    def enter(self, phase: int) -> None:
        """The one place the phase changes: checked against NEXT, and the deadline set."""
        if phase not in NEXT[self.phase]:
            raise AssertionError(f"exchange: {PHASES[self.phase]} -> {PHASES[phase]} is not a transition")
        self.phase = phase
        if phase is CONNECTING:
            self.client.deadline = self.loop.now + self.worker.timeouts.connect
        elif phase is not DONE and phase is not TUNNEL:
            self.client.deadline = self.loop.now + (self.route.timeout if self.route is not None
                                                    else self.worker.timeouts.keepalive)

    @property
    def connecting(self) -> bool:
        """Nothing of the request has reached a backend yet."""
        return self.phase is CONNECTING or self.conn is None

    # == routing =========================================================================
    def start(self) -> None:
        head = self.head
        target = head.target
        if head.method == b"CONNECT":       # whatever its target: a backend might take it for a tunnel
            self.answer(405, "CONNECT is not served by a reverse proxy")
            return
        if target[:1] != b"/":
            target = routing.origin_form(target)
            if target is None:
                self.answer(400, "request target must be origin-form or absolute-form")
                return
        normal = routing.routed_target(target)
        try:
            if normal is target:
                route, mapped = self.worker.router.resolve(target, head)
            elif normal.__class__ is str:       # why it is refused
                self.answer(400, normal)
                return
            else:
                route, mapped = self.worker.router.resolve_normalised(target, normal, head)
        except RegexTimeout as timeout:
            ownanswer.routing_too_slow(self, timeout.route)
            return
        # (An HTTP/2 stream tunnels only by an extended CONNECT, whose head asks: never unasked.)
        if route is not None and (head.upgrade is not None or (route.always_upgrade and not self.client.http2)):
            self.upgrade = route.upgrade_header(head)
        if (self.upgrade is not None or self.client.limiter is not None) and not policy.admit(self, route):
            return
        if route is None:
            self.answer(404, "No route matches this URL.", keep_alive=not head.has_body)
            return
        self.route = route
        if route.origin is not None:        # a route to one backend: nothing to pick (no call)
            self.origin = route.origin
        elif not self.pick():
            self.answer(503, "No balancer member is available.", keep_alive=not head.has_body)
            return
        framing = self.req_framing = head.body_framing() if head.chunked or head.content_length else None
        limit = self.worker.limits.request_body
        if limit and head.content_length and head.content_length > limit:
            self.answer(413, "request body larger than LimitRequestBody")
            return
        self.mapped = mapped
        out = self.request_head()
        inbuf = self.client.inbuf
        if framing is not None and inbuf:
            end = bodies.scan_request(self, inbuf, 0, len(inbuf))
            if end < 0:
                return
            self.body_prefix = bytes(inbuf[:end])   # kept for a failover to another member
            self.received += end
            out += self.body_prefix
            del inbuf[:end]
        # A request we hold whole can be sent again on a fresh connection if a pooled one was dead.
        self.request_copy = out if self.req_framing is None else None
        connecting.connect(self, out)

    def pick(self) -> bool:
        """Choose a member of the route's balancer (counted busy until released).  A route to
        one backend has nothing to choose: `start` takes its origin, and a failover only
        happens to a member."""
        route = self.route
        origin, self.member, self.cookie = self.worker.lb.pick(route.balancer, self.head, self.client_ip, self.tried)
        self.origin = origin
        return origin is not None

    def request_head(self) -> bytes:
        head, route, client = self.head, self.route, self.client
        host_line = (b"Host: " + head.host + b"\r\n") if route.preserve_host and head.host else self.origin.host_line
        return client.head_writer(head, self.mapped, host_line, client.xff_line, client.proto_line, self.upgrade,
                                  client.forwarded)

    # == the request direction ==============================================================
    def read_request_body(self) -> None:
        """The client is readable while its body is still due: relay a read's worth."""
        bodies.relay_request(self)

    # == backend events =======================================================================
    def on_backend_event(self, mask: int) -> None:
        conn = self.conn
        if self.phase is CONNECTING:
            if not connecting.advance(self, conn):
                return
            mask |= EPOLLOUT
        flushed = mask & EPOLLOUT and conn.out
        if flushed:
            try:
                conn.flush()
            except OSError as exc:
                why = f"send failed: {exc.strerror or exc}"
                if self.request_copy is not None and self.phase is WAITING:
                    self.backend_lost(why, self.request_copy)     # held whole: it may go again
                    return
                self.request_cut(why)       # what the backend answered is read below
            else:
                self.client.deadline = self.loop.now + self.route.timeout
        if self.conn is not conn:       # failed, failed over, done
            return
        if self.phase not in _BACKEND_READS:
            if mask & (EPOLLHUP | EPOLLERR):    # reported whatever the interest: must not spin
                self._lost_after_response()
            return
        if conn.mask & EPOLLIN and mask & (EPOLLIN | EPOLLHUP | EPOLLERR):
            while True:
                if self.phase is WAITING:
                    response.read_head(self)
                elif not bodies.relay_response(self):
                    break           # the next turn's (an HTTP/2 connection's share is framed)
                # TLS: what the SSL object holds (decrypted, or read ahead) epoll will not report.
                if not (conn.tls and self.conn is conn and self.phase in _BACKEND_READS and conn.mask & EPOLLIN
                        and buffered(conn.sock)):
                    break
            if flushed and self.conn is conn and self.phase in _BACKEND_READS:
                self.update_interest()      # the drained `out` lets the client's body be read again
        elif mask & (EPOLLHUP | EPOLLERR) and not conn.mask & EPOLLOUT:
            if self.client.ep.out:
                # Not read while the client is slower (back-pressure), but a reset is reported
                # whatever the interest: out of epoll until the client drains (update_interest
                # adds it back), then the socket gives what it holds of the response before
                # the error.  A whole response sent before a reset is not cut.
                conn.unregister()
            else:
                self.backend_lost("backend connection reset", self.request_copy)
        else:
            self.update_interest()

    # == the response direction (worker.bodies reads it) ========================================
    def response_started(self) -> None:
        self.resp_started = True

    def relaying(self, more: bool = False) -> None:
        """The head went to the client; the body follows.  `more`: the read that brought the
        head was full, so the body's next part is most likely there already (a large response
        sent at once): relay it in this turn, not after another wait in epoll."""
        self.enter(RELAYING)
        if more and not self.client.ep.out:
            bodies.relay_response(self)
        else:
            self.update_interest()

    def response_read(self) -> None:
        """The backend has sent the whole response: done, or FLUSHING while the client has
        yet to take the rest (the backend connection goes back to the pool meanwhile, unless
        the request body is still being relayed to it)."""
        if self.client.ep.out:
            if self.req_framing is None:
                self.release_backend()
            self.enter(FLUSHING)
            self.update_interest()
        else:
            self.done()

    def client_flushed(self, done: bool) -> None:
        """The client took some of what we held for it."""
        if self.route is not None:
            self.client.deadline = self.loop.now + self.route.timeout
        if done and self.phase is FLUSHING:
            self.done()
        elif self.phase is not DONE:
            self.update_interest()

    def _lost_after_response(self) -> None:
        """The backend went away after its whole response (FLUSHING, the request body still
        due to it): the rest of the body has nowhere to go.  The client gets the response,
        then its connection closes, lingering over what it still sends."""
        self.reusable = self.keep_alive = False
        self.req_framing = None
        self.body_left = True
        self.release_backend(reuse=False)
        self.update_interest()

    def request_cut(self, why: str) -> None:
        """A send of the request failed (the backend reset or closed the connection) after
        some of it went: the backend may have answered already, early (a 413 or a 401 to an
        upload it would not take), and the socket gives what it queued before its error.  So
        the response is read on, as HAProxy relays such an answer; a read that finds only the
        error is the 502 it was (worker.response.read_head).  The rest of the request has
        nowhere to go: the client connection closes after the response, lingering over what
        its client still sends (what it reads meanwhile waits in `inbuf`, never parsed)."""
        if self.phase is FLUSHING:          # the response is whole: nothing left to read
            self._lost_after_response()
            return
        self.worker.log_error("info", f"route {self.route.name} backend {self.origin.name}: {why} "
                                      "before the whole request went; reading its answer")
        self.conn.out = None
        if self.req_framing is not None:
            self.req_framing = None
            self.body_left = True
        self.reusable = self.keep_alive = False
        self.update_interest()

    # == our own answers (worker.ownanswer: the refusals, 404 and 503, a backend's 502 and 504) ==
    answer = ownanswer.answer
    backend_lost = ownanswer.backend_lost
    backend_failed = ownanswer.backend_failed
    on_deadline = ownanswer.on_deadline

    # == endings ================================================================================
    def done(self) -> None:
        """The response is out: release the member, pool or drop the backend, log."""
        self.enter(DONE)
        self.release_backend()
        if self.req_framing is not None:      # answered before the client finished its body
            self.keep_alive = False
        self.client.exchange_done(self, self.keep_alive)

    def release_backend(self, reuse: bool = True) -> None:
        """The member's count, and the connection pooled if it can serve again (and `reuse`),
        else closed."""
        if self.member is not None:
            self._release_member()
        conn, self.conn = self.conn, None
        if conn is not None:
            if (reuse and self.reusable and self.req_framing is None and not conn.out
                    and (conn.pool_key is conn.origin.key or self.keep_alive)):   # private: its client stays
                self.worker.pool.release(conn)
            else:
                conn.close()

    def _release_member(self) -> None:
        self.worker.lb.end(self.member, self.received + self.sent)
        self.member = None

    def abort(self) -> None:
        """The client is gone (or the response cannot be finished): log what reached it."""
        if self.phase is DONE or self.phase is TUNNEL:
            return
        self.aborted = True
        self.keep_alive = False
        out = self.client.ep.out
        if out:
            self.sent -= len(out)        # what never left us did not reach the client
        self.release_backend(reuse=False)
        self.enter(DONE)
        self.client.exchange_done(self, False)

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): its client connection ends (on HTTP/2,
        its stream alone), and the backend connection and the member's count go back
        whatever the phase was."""
        self.client.close()
        self.release_backend(reuse=False)

    # == interest =================================================================================
    def update_interest(self) -> None:
        """Derive both endpoints' epoll interest from the state (module docstring)."""
        phase = self.phase
        if phase is DONE or phase is TUNNEL:
            return
        client, conn = self.client, self.conn
        if self.req_framing is not None:
            reading = phase is not CONNECTING and conn is not None and not conn.out
        else:   # read ahead (pipelining), up to a bound
            reading = not client.eof and len(client.inbuf) < READ_AHEAD
        ep = client.ep
        ep.want(reading)
        if ep.tls and reading and buffered(ep.sock):
            self.loop.call_soon(client.read_pending)
        if conn is not None and phase is not CONNECTING:   # before that, advance() owns it
            backend_reading = phase in _BACKEND_READS and not client.ep.out
            conn.want(backend_reading)
            if conn.tls and backend_reading and buffered(conn.sock):
                self.loop.call_soon(partial(self.on_backend_event, EPOLLIN))    # faults.contain finds its owner
