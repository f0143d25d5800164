"""One client connection: a sequence of HTTP exchanges, possibly ending in a tunnel.

Theory of operation
-------------------
A connection is in one `Phase` at a time:

    HEAD ──head parsed──> CONNECTING ──connected──> EXCHANGE ──response done──> HEAD (keep-alive)
      │                        │                        │                 └──> closed
      │                        └── 502/504 ─────────────┤
      └── 4xx, timeout, EOF ──> closed                  └── 101 ──> handed to a tunnel.Tunnel

Inside EXCHANGE two directions run at once and end on their own: the request body
(`req_framing`, None once the whole request is out) and the response (`resp_phase`
HEAD -> BODY -> DONE).  The exchange is over when the response is done and its last
byte has reached the client; the backend connection goes back to the pool only when
both directions ended cleanly.

Bytes move through the worker's shared buffer; a connection keeps a leftover
(`to_backend`, `to_client`) only after a partial send, and while one exists the
direction feeding it stops reading (back-pressure).  Epoll interest is derived from
the state in `_update_interest`, never tracked apart, and changed only when it
differs, so a keep-alive exchange on a pooled backend costs no epoll_ctl at all.
Bytes the client sends ahead (pipelining) wait in `inbuf`, up to READ_AHEAD.
"""

from __future__ import annotations

import enum

from conf.model import UPGRADE_ANY, UPGRADE_NONE
from tunnel.buffer import SHARED_BUFFER, SHARED_BUFFER_SIZE, SHARED_VIEW
from tunnel.tunnel import Tunnel, send_some
from worker.balancer import IDEMPOTENT
from worker.framing import NO_BODY, BadFraming, ChunkedFraming, CloseFraming, LengthFraming
from worker.http1 import HeadReader, HttpError, connection_tokens
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT
from worker.rewrite import error_response, request_head, response_head
from worker.routing import has_dot_segment
from worker.tls import WOULD_BLOCK, describe

READ_AHEAD = 64 * 1024          # pipelined bytes we hold before we stop reading a client
MAX_RESPONSE_HEAD = 64 * 1024   # a backend head larger than this is invalid (502)
_WOULD_BLOCK = WOULD_BLOCK
REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           413: "Content Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 502: "Bad Gateway", 504: "Gateway Timeout",
           505: "HTTP Version Not Supported"}


class Phase(enum.IntEnum):
    HEAD = 0         # reading a request head, or idle between requests
    CONNECTING = 1   # backend connect under way, request head held in to_backend
    EXCHANGE = 2     # request and response flowing
    CLOSED = 3       # closed, or handed to a tunnel


class _Resp(enum.IntEnum):
    HEAD = 0
    BODY = 1
    DONE = 2


class ClientConnection:
    __slots__ = (
        "worker", "loop", "sock", "fd", "client_ip", "mask", "phase", "deadline",
        "inbuf", "reader", "head", "route", "backend", "conn", "upgrade",
        "to_backend", "to_client", "req_framing", "request_copy", "retried",
        "respbuf", "resp_reader", "resp", "resp_phase", "resp_framing", "resp_started",
        "keep_alive", "client_eof", "backend_clean", "started", "status", "sent", "received",
        "requests", "head_sent", "tls", "proto",
        "member", "tried", "mapped", "body_prefix", "set_cookie",   # balancer member, failover, sticky insert
    )

    def __init__(self, worker, sock, client_ip: bytes, tls: bool = False):
        self.worker = worker
        self.loop = loop = worker.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip
        self.tls = tls
        self.proto = b"https" if tls else b"http"    # X-Forwarded-Proto, ProxyPassReverse
        self.phase = Phase.HEAD
        self.inbuf = bytearray()
        self.reader = None
        self.conn = None
        self.to_backend = None
        self.to_client = None
        self.client_eof = False
        self.requests = 0
        self.req_framing = None
        self.resp_phase = _Resp.DONE
        self.resp_started = False
        self.keep_alive = True
        self.head = self.route = self.backend = self.upgrade = None
        self.member = self.set_cookie = None
        self.started = loop.now
        self.status = self.sent = self.received = self.head_sent = 0
        self.deadline = loop.now + worker.timeouts.client_header
        self.mask = EPOLLIN
        loop.add(self.fd, EPOLLIN, self.on_client_event)
        loop.timed.add(self)

    # == events =========================================================================
    def on_client_event(self, mask: int) -> None:
        if mask & EPOLLOUT and self.to_client:
            self._drain_client()
        if self.phase is Phase.CLOSED:
            return
        if self.mask & EPOLLIN and mask & (EPOLLIN | EPOLLHUP | EPOLLERR):
            self._read_client()
            if self.tls:
                self._read_client_pending()
        elif mask & (EPOLLHUP | EPOLLERR):
            self._abort("client went away")

    def _read_client_pending(self) -> None:
        """TLS: read what the SSL object holds decrypted; epoll will not report it."""
        while self.phase is not Phase.CLOSED and self.mask & EPOLLIN and self.sock.pending():
            self._read_client()

    def on_backend_event(self, mask: int) -> None:
        conn = self.conn
        if not conn.connected:
            try:
                wanted = conn.advance()
            except ConnectionError as exc:
                self._backend_failed(502, exc.strerror or str(exc))
                return
            except OSError as exc:    # ssl.SSLError included
                self._backend_failed(502, f"TLS handshake with the backend failed: {describe(exc)}")
                return
            if wanted:
                if wanted != conn.mask:
                    self.loop.modify(conn.fd, wanted)
                    conn.mask = wanted
                return
            self.phase = Phase.EXCHANGE
            self.deadline = self.loop.now + self.route.timeout
            mask |= EPOLLOUT
        if mask & EPOLLOUT and self.to_backend:
            self._drain_backend()
        if self.phase is Phase.CLOSED or self.conn is not conn:   # closed, or failed over to another
            return
        if conn.mask & EPOLLIN and mask & (EPOLLIN | EPOLLHUP | EPOLLERR):
            self._read_backend()
            if conn.tls and self.conn is conn:
                self._read_backend_pending()
        elif mask & (EPOLLHUP | EPOLLERR) and not conn.mask & EPOLLOUT:
            self._backend_failed(502, "backend connection reset")
        else:
            self._update_interest()

    def _read_backend_pending(self) -> None:
        while self.phase is not Phase.CLOSED and self.conn is not None and self.conn.mask & EPOLLIN \
                and self.conn.sock.pending():
            self._read_backend()

    def on_deadline(self) -> None:
        if self.phase is Phase.HEAD:
            if self.inbuf or self.reader is not None:
                self._reject(408, "timed out reading the request head")
            else:
                self.close()       # idle keep-alive or silent connection: close quietly
        elif self.phase is Phase.CONNECTING:
            self._backend_failed(504, "connect timed out")
        else:
            self._backend_failed(504, "backend timed out")

    # == client side ========================================================================
    def _read_client(self) -> None:
        framing = self.req_framing
        want = framing.wanted(SHARED_BUFFER_SIZE) if framing is not None and self.phase is not Phase.HEAD \
            else SHARED_BUFFER_SIZE
        try:
            n = self.sock.recv_into(SHARED_VIEW, want)
        except _WOULD_BLOCK:
            return
        except OSError:
            n = -1
        if n <= 0:
            if self.phase is Phase.HEAD or framing is not None:
                # Mid-head or mid-body: nothing more will come, nothing to answer.
                self._abort("client closed the connection" if n == 0 else "client connection reset")
            else:
                self.client_eof = True   # finish the response, then close
                self._update_interest()
            return
        self.received += n
        if self.phase is Phase.HEAD:
            if not self.inbuf and self.reader is None:
                self.deadline = self.loop.now + self.worker.timeouts.client_header
            self.inbuf += SHARED_VIEW[:n]
            self._process_head()
        elif framing is not None:
            self._relay_request_body(n)
        else:
            self.inbuf += SHARED_VIEW[:n]   # pipelined: parsed when this exchange ends
            if len(self.inbuf) >= READ_AHEAD:
                self._update_interest()

    def _relay_request_body(self, n: int) -> None:
        framing = self.req_framing
        try:
            stop = framing.feed(SHARED_BUFFER, 0, n)
        except BadFraming as exc:
            self._reject(400, str(exc))
            return
        if stop >= 0:
            self.inbuf += SHARED_VIEW[stop:n]
            self.received -= n - stop
            n = stop
            self.req_framing = None
        limit = self.worker.limits.request_body
        if limit and framing.__class__ is ChunkedFraming and framing.data_bytes > limit:
            self._reject(413, "request body larger than LimitRequestBody")
            return
        self._send_backend(SHARED_VIEW[:n])
        if self.phase is not Phase.CLOSED:
            self._update_interest()

    def _process_head(self) -> None:
        reader = self.reader
        if reader is None:
            reader = self.reader = HeadReader(True, self.worker.limits)
        try:
            size = reader.feed(self.inbuf)
            if not size:
                self._update_interest()
                return
            head = reader.request(size)
        except HttpError as exc:
            self._reject(exc.status, exc.message)
            return
        self.reader = None
        del self.inbuf[:size]
        self._start_exchange(head)

    def _start_exchange(self, head) -> None:
        worker = self.worker
        self.requests += 1
        self.head = head
        self.started = self.loop.now
        self.status = 0
        self.sent = self.head_sent = 0
        self.received = head.raw_size
        self.route = None
        self.backend = None
        self.resp_started = False
        self.retried = False
        self.keep_alive = head.keep_alive
        target = head.target
        if target[:1] != b"/":
            if head.method == b"CONNECT":
                self._reject(405, "CONNECT is not served by a reverse proxy")
                return
            target = _origin_form(target)
            if target is None:
                self._reject(400, "request target must be origin-form or absolute-form")
                return
        if has_dot_segment(target):
            self._reject(400, "dot-segments in the request path")
            return
        route, mapped = worker.router.resolve(target, head)
        if route is None:
            self._local_response(404, "No route matches this URL.")
            return
        self.route = route
        self.tried = ()
        self.body_prefix = b""
        backend, self.member, self.set_cookie = worker.pick_backend(route, head, self.client_ip)
        self.backend = backend
        if backend is None:
            self._local_response(503, "No balancer member is available.")
            return
        self.upgrade = _upgrade_value(head.upgrade, route.upgrade, head.has_body or head.version != "1.1")
        limit = worker.limits.request_body
        if head.chunked:
            self.req_framing = ChunkedFraming()
        elif head.content_length:
            if limit and head.content_length > limit:
                self._reject(413, "request body larger than LimitRequestBody")
                return
            self.req_framing = LengthFraming(head.content_length)
        else:
            self.req_framing = None
        self.mapped = mapped
        out = self._request_head(backend)
        if self.req_framing is not None and self.inbuf:
            try:
                stop = self.req_framing.feed(self.inbuf, 0, len(self.inbuf))
            except BadFraming as exc:
                self._reject(400, str(exc))
                return
            if limit and head.chunked and self.req_framing.data_bytes > limit:
                self._reject(413, "request body larger than LimitRequestBody")
                return
            body_end = len(self.inbuf) if stop < 0 else stop
            self.body_prefix = bytes(self.inbuf[:body_end])   # kept for a failover to another member
            out += self.body_prefix
            del self.inbuf[:body_end]
            if stop >= 0:
                self.req_framing = None
        # A request we hold whole can be retried on a fresh connection if a pooled one was dead.
        self.request_copy = out if self.req_framing is None else None
        self.respbuf = bytearray()
        self.resp_reader = HeadReader(False)
        self.resp_phase = _Resp.HEAD
        self.backend_clean = True
        self._connect_and_send(out)

    def _request_head(self, backend) -> bytes:
        head = self.head
        host = head.host if self.route.route.preserve_host and head.host else self.worker.host_header(backend)
        out = request_head(head, self.mapped, host, self.client_ip, self.proto, self.upgrade)
        if head.version == "1.0":   # a 1.0 client cannot take chunked back: ask the backend for 1.0
            out = out.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        return out

    def _connect_and_send(self, out: bytes, fresh: bool = False) -> None:
        try:
            conn = self.worker.pool.acquire(self.backend, self.on_backend_event, fresh)
        except OSError as exc:
            self.conn = None
            self._backend_failed(502, f"connect failed: {exc.strerror or exc}")
            return
        self.conn = conn
        if conn.connected:
            self.phase = Phase.EXCHANGE
            self.deadline = self.loop.now + self.route.timeout
            self._send_backend(out)
        else:
            self.phase = Phase.CONNECTING
            self.deadline = self.loop.now + self.worker.timeouts.connect
            self.to_backend = bytes(out)
        if self.phase is not Phase.CLOSED:
            self._update_interest()

    def _send_backend(self, data) -> None:
        if self.to_backend:
            self.to_backend += bytes(data)
            return
        try:
            sent = send_some(self.conn.sock, data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self._backend_failed(502, f"send failed: {exc.strerror or exc}")
            return
        if sent < len(data):
            self.to_backend = bytes(data[sent:])

    def _drain_backend(self) -> None:
        try:
            sent = send_some(self.conn.sock, self.to_backend)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            self._backend_failed(502, f"send failed: {exc.strerror or exc}")
            return
        self.to_backend = self.to_backend[sent:] or None
        self.deadline = self.loop.now + self.route.timeout

    def _send_client(self, data) -> None:
        self.sent += len(data)
        if self.to_client:
            self.to_client += bytes(data)
            return
        try:
            sent = send_some(self.sock, data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError:
            self._abort("client went away")
            return
        if sent < len(data):
            self.to_client = bytes(data[sent:])

    def _drain_client(self) -> None:
        try:
            sent = send_some(self.sock, self.to_client)
        except _WOULD_BLOCK:
            return
        except OSError:
            self._abort("client went away")
            return
        self.to_client = self.to_client[sent:] or None
        if self.to_client is None:
            if self.resp_phase is _Resp.DONE and self.phase is not Phase.HEAD:
                self._finish_exchange()
                return
            if self.phase is Phase.HEAD and not self.keep_alive:
                self.close()       # a local response sent before closing
                return
        if self.route is not None:
            self.deadline = self.loop.now + self.route.timeout
        self._update_interest()

    # == backend side =======================================================================
    def _read_backend(self) -> None:
        framing = self.resp_framing if self.resp_phase is _Resp.BODY else None
        want = framing.wanted(SHARED_BUFFER_SIZE) if framing is not None else SHARED_BUFFER_SIZE
        try:
            n = self.conn.sock.recv_into(SHARED_VIEW, want)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            self._backend_eof(f"backend reset the connection: {exc.strerror or exc}")
            return
        if n == 0:
            self._backend_eof("backend closed the connection")
            return
        self.deadline = self.loop.now + self.route.timeout
        if framing is None:
            self.respbuf += SHARED_VIEW[:n]
            self._process_response_head()
            return
        try:
            stop = framing.feed(SHARED_BUFFER, 0, n)
        except BadFraming as exc:
            self._backend_failed(502, f"invalid response body: {exc}")
            return
        if stop >= 0:
            if stop < n:
                self.backend_clean = False   # bytes after the body: not a connection to reuse
            n = stop
            self.resp_phase = _Resp.DONE
        if framing.__class__ is ChunkedFraming and framing.spans is not None:
            self._send_client(_data_of(framing, SHARED_VIEW))
        else:
            self._send_client(SHARED_VIEW[:n])
        self._after_response_bytes()

    def _process_response_head(self) -> None:
        while True:
            try:
                size = self.resp_reader.feed(self.respbuf)
                if (size or len(self.respbuf)) > MAX_RESPONSE_HEAD:
                    raise HttpError(502, "response head too large")
                if not size:
                    return
                resp = self.resp_reader.response(size)
            except HttpError as exc:
                self._backend_failed(502, f"invalid response: {exc.message}")
                return
            del self.respbuf[:size]
            if resp.status >= 200:
                break
            if resp.status == 101:
                self._switch_protocols(resp)
                return
            # 1xx interim (100 Continue, 103 Early Hints): relay it and read on.
            self._send_client(response_head(resp, True, False, True, None))
            self.resp_reader = HeadReader(False)
            if self.phase is Phase.CLOSED:
                return
        self.resp = resp
        self.status = resp.status
        if self.member is not None:
            self.worker.lb.response(self.member, resp.status)   # failonstatus=
        head = self.head
        if head.method == b"HEAD" or resp.status in (204, 304):
            framing = NO_BODY
        elif resp.chunked:
            # An HTTP/1.0 client cannot take chunked: relay the data, end it with the close.
            framing = ChunkedFraming(decode=head.version == "1.0")
        elif resp.content_length is not None:
            framing = LengthFraming(resp.content_length)
        else:
            framing = CloseFraming()
        self.resp_framing = framing
        backend_keeps = resp.keep_alive and framing.__class__ is not CloseFraming
        if not backend_keeps:
            self.backend_clean = False
        self.keep_alive = (self.keep_alive and not self.client_eof and not self.worker.stopping
                           and framing.__class__ is not CloseFraming)
        dechunk = framing.__class__ is ChunkedFraming and framing.spans is not None
        if dechunk:
            self.keep_alive = False
        reverse = self.worker.reverse_map(self.route, self.backend, head, self.proto) \
            if self.route.route.reverse else None
        out = response_head(resp, self.keep_alive, head.version == "1.0", not dechunk, reverse)
        if self.set_cookie is not None:    # sticky: {insert: true}
            out = out[:-2] + self.set_cookie + b"\r\n"
        self.head_sent = len(out)
        self.resp_phase = _Resp.BODY
        if self.respbuf:
            try:
                stop = framing.feed(self.respbuf, 0, len(self.respbuf))
            except BadFraming as exc:
                self._backend_failed(502, f"invalid response body: {exc}")
                return
            if stop >= 0:
                if stop < len(self.respbuf):
                    self.backend_clean = False
                body = self.respbuf[:stop]
                self.resp_phase = _Resp.DONE
            else:
                body = self.respbuf
            out += _data_of(framing, body) if dechunk else body
            self.respbuf = bytearray()
        elif framing is NO_BODY or (framing.__class__ is LengthFraming and framing.remaining == 0):
            self.resp_phase = _Resp.DONE
        self.resp_started = True    # from here on, an error can only be told by closing
        self._send_client(out)
        self._after_response_bytes()

    def _after_response_bytes(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        if self.resp_phase is _Resp.DONE and not self.to_client:
            self._finish_exchange()
        else:
            self._update_interest()

    def _backend_eof(self, why: str) -> None:
        if self.resp_phase is _Resp.BODY and self.resp_framing.__class__ is CloseFraming:
            self.backend_clean = False
            self.resp_phase = _Resp.DONE        # read-until-close: EOF is the end
            self._after_response_bytes()
        elif (self.resp_phase is _Resp.HEAD and not self.respbuf and self.conn.reused
              and self.request_copy is not None and not self.retried):
            # A pooled connection the backend had closed: nothing of the request was
            # processed, so send it again on a fresh connection (once).
            self.retried = True
            self.worker.pool.discard(self.conn)
            self.conn = None
            self.to_backend = None
            self._connect_and_send(self.request_copy, fresh=True)
        else:
            self._backend_failed(502, why)

    def _switch_protocols(self, resp) -> None:
        """A 101: relay it and turn both sockets into a tunnel."""
        asked = self.upgrade
        offered = resp.get(b"upgrade")
        if asked is None or (self.route.upgrade is not UPGRADE_ANY and self.route.upgrade is not UPGRADE_NONE
                             and (offered is None or not connection_tokens(offered) & connection_tokens(asked))):
            self._backend_failed(502, "backend switched protocols without an agreed upgrade")
            return
        worker, loop = self.worker, self.loop
        head101 = response_head(resp, True, False, True, None, upgrade=True)
        if self.set_cookie is not None:
            head101 = head101[:-2] + self.set_cookie + b"\r\n"
        to_client = (self.to_client or b"") + head101 + bytes(self.respbuf)   # an unsent 1xx goes first
        to_backend = (self.to_backend or b"") + bytes(self.inbuf)
        self.status = 101
        self.phase = Phase.CLOSED
        loop.timed.discard(self)
        loop.remove(self.fd)
        conn, self.conn = self.conn, None
        loop.remove(conn.fd)
        head = self.head
        context = {"client": self.client_ip.decode(), "method": head.method.decode("latin-1"),
                   "target": head.target.decode("latin-1"), "version": head.version,
                   "referer": (head.get(b"referer") or b"").decode("latin-1"),
                   "agent": (head.get(b"user-agent") or b"").decode("latin-1"),
                   "route": self.route.name, "backend": self.backend.origin, "head_size": head.raw_size}
        on_close = worker.tunnel_closed
        if self.member is not None:        # the member counts the tunnel as busy until it closes
            context["lb"] = worker.lb.key(self.member)
            on_close = worker.lb.tunnel_closer(self.member, on_close)
            self.member = None
        tunnel = Tunnel(loop, self.sock, conn.sock, self.route.timeout, on_close,
                        to_backend=to_backend, to_client=to_client, context=context)
        worker.tunnel_opened(tunnel)

    # == endings ============================================================================
    def _finish_exchange(self) -> None:
        """The response is out: log it, pool or drop the backend, then next request or close."""
        worker = self.worker
        worker.exchange_done(self)
        if self.member is not None:
            self._release_member()
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.backend_clean and self.req_framing is None and not self.to_backend:
                worker.pool.release(conn)
            else:
                worker.pool.discard(conn)
        if self.req_framing is not None:      # answered before the client finished its body
            self.keep_alive = False
        self.route = None
        if not self.keep_alive or self.client_eof or worker.stopping:
            self.close()
            return
        self.phase = Phase.HEAD
        self.resp_phase = _Resp.DONE
        self.resp_started = False
        self.to_backend = None
        self.deadline = self.loop.now + worker.timeouts.keepalive
        if self.inbuf:
            self._process_head()
        else:
            self._update_interest()

    def _local_response(self, status: int, message: str) -> None:
        """An answer of our own (404, 503) that keeps the connection when it can."""
        self.status = status
        self.keep_alive = self.keep_alive and not self.head.has_body
        self.phase = Phase.HEAD
        self.resp_started = False
        out = error_response(status, REASONS.get(status, "Error"), message, self.keep_alive)
        self.head_sent = out.find(b"\r\n\r\n") + 4
        self._send_client(out)
        self.worker.exchange_done(self)
        self.deadline = self.loop.now + self.worker.timeouts.keepalive
        if self.phase is Phase.CLOSED:
            return
        if not self.keep_alive and not self.to_client:
            self.close()
        elif self.inbuf and not self.to_client:
            self._process_head()
        else:
            self._update_interest()

    def _reject(self, status: int, message: str) -> None:
        """A bad request: answer `status` and close (nothing reaches a backend)."""
        self.worker.log_error("info", f"{self.client_ip.decode()} {status}: {message}")
        self._fail_response(status, message)

    def _backend_failed(self, status: int, why: str) -> None:
        if self.member is not None and self._failover(status, why):
            return
        route = self.route.name if self.route is not None else "-"
        backend = self.backend.origin if self.backend is not None else "-"
        self.worker.log_error("error", f"route {route} backend {backend}: {why} ({status})")
        self._fail_response(status, why)

    def _fail_response(self, status: int, message: str) -> None:
        if self.member is not None:
            self._release_member()
        if self.conn is not None:
            self.worker.pool.discard(self.conn)
            self.conn = None
        self.keep_alive = False
        if self.phase is Phase.CLOSED:
            return
        if self.resp_started:
            self.close()         # the response had begun: closing is all that is honest
            return
        self.status = status
        if self.requests == 0:
            self.requests = 1
            self.started = self.loop.now
            self.head = None
        self.phase = Phase.HEAD
        self.resp_phase = _Resp.DONE
        self.req_framing = None
        self.to_backend = None
        out = error_response(status, REASONS.get(status, "Error"), message)
        self.head_sent = out.find(b"\r\n\r\n") + 4
        self._send_client(out)
        self.worker.exchange_done(self)
        if self.phase is not Phase.CLOSED:
            if self.to_client:
                self.deadline = self.loop.now + self.worker.timeouts.keepalive
                self._update_interest()
            else:
                self.close()

    def _release_member(self) -> None:
        self.worker.lb.end(self.member, self.received + self.sent)
        self.member = None

    def _failover(self, status: int, why: str) -> bool:
        """mod_proxy_balancer's failover: a request nothing of which a backend has taken (the
        connect failed) or may safely take twice (an idempotent request or an upgrade handshake
        we hold whole, cut off before any response byte) is sent to another member.  False:
        fail as usual.  When every member has been tried, the answer is 503."""
        worker, member = self.worker, self.member
        connecting = self.phase is Phase.CONNECTING or self.conn is None
        worker.lb.failed(member, why, connecting)
        if not connecting and not (
                status == 502 and self.request_copy is not None and not self.sent and not self.resp_started
                and self.resp_phase is _Resp.HEAD and not self.respbuf and not self.resp_reader.fed
                and (self.upgrade is not None or self.head.method in IDEMPOTENT)):
            return False
        failed_origin = self.backend.origin
        worker.lb.end(member, 0)
        self.member = None
        if self.conn is not None:
            worker.pool.discard(self.conn)
            self.conn = None
        self.tried += (member,)
        backend, self.member, cookie = worker.pick_backend(self.route, self.head, self.client_ip, self.tried)
        if backend is None:
            worker.log_error("error", f"route {self.route.name} backend {failed_origin}: {why}; "
                                      "no other balancer member can take the request (503)")
            self._fail_response(503, "No balancer member could take the request.")
            return True
        worker.log_error("warning", f"route {self.route.name} backend {failed_origin}: {why}; "
                                    f"failing over to {backend.origin}")
        self.backend = backend
        self.set_cookie = cookie
        out = self._request_head(backend) + self.body_prefix
        if self.request_copy is not None:
            self.request_copy = out
        self.to_backend = None
        self.retried = False
        self.respbuf = bytearray()
        self.resp_reader = HeadReader(False)
        self.resp_phase = _Resp.HEAD
        self.backend_clean = True
        self._connect_and_send(out)
        return True

    def _abort(self, why: str) -> None:
        """The client is gone: drop its backend connection (never pooled) and close."""
        if self.conn is not None:
            self.worker.pool.discard(self.conn)
            self.conn = None
        self.close()

    def close(self) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        loop = self.loop
        loop.timed.discard(self)
        loop.remove(self.fd)
        if self.member is not None:
            self._release_member()
        if self.conn is not None:
            self.worker.pool.discard(self.conn)
            self.conn = None
        try:
            self.sock.close()
        except OSError:
            pass
        self.worker.connection_closed()

    # == interest =============================================================================
    def _update_interest(self) -> None:
        """Derive both sockets' epoll interest from the state (module docstring)."""
        phase = self.phase
        if phase is Phase.CLOSED:
            return
        if phase is Phase.HEAD:
            reading = self.keep_alive
        elif self.req_framing is not None:
            reading = not self.to_backend and phase is Phase.EXCHANGE
        else:
            reading = not self.client_eof and len(self.inbuf) < READ_AHEAD
        mask = (EPOLLIN if reading else 0) | (EPOLLOUT if self.to_client else 0)
        if mask != self.mask:
            self.loop.modify(self.fd, mask)
            self.mask = mask
        if self.tls and mask & EPOLLIN and self.sock.pending():
            self.loop.call_soon(self._read_client_pending)
        conn = self.conn
        if conn is not None and conn.connected:   # before that, advance() owns its interest
            bmask = (EPOLLIN if self.resp_phase is not _Resp.DONE and not self.to_client else 0) | \
                    (EPOLLOUT if self.to_backend else 0)
            if bmask != conn.mask:
                self.loop.modify(conn.fd, bmask)
                conn.mask = bmask
            if conn.tls and bmask & EPOLLIN and conn.sock.pending():
                self.loop.call_soon(self._read_backend_pending)


def _data_of(framing: ChunkedFraming, buf) -> bytes:
    """The chunk data among what the scan just passed over (de-chunking)."""
    data = b"".join(buf[start:stop] for start, stop in framing.spans)
    framing.spans.clear()
    return data


def _origin_form(target: bytes) -> bytes | None:
    """absolute-form "http://host/path?q" -> "/path?q" (RFC 9112 §3.2.2)."""
    lower = target[:8].lower()
    if not (lower.startswith(b"http://") or lower.startswith(b"https://")):
        return None
    slash = target.find(b"/", target.find(b"//") + 2)
    return target[slash:] if slash >= 0 else b"/"


def _upgrade_value(asked: bytes | None, allowed, plain_only: bool) -> bytes | None:
    """The Upgrade header to send to the backend, or None to forward as plain HTTP
    (`plain_only`: a request with a body, or an HTTP/1.0 one, is never upgraded)."""
    if allowed is UPGRADE_NONE or allowed == UPGRADE_NONE:
        return None if plain_only else (asked or b"websocket")
    if asked is None:
        return None
    if allowed is UPGRADE_ANY or allowed == UPGRADE_ANY:
        return asked
    for token in connection_tokens(asked):
        if token.split(b"/", 1)[0].decode("latin-1") in allowed:
            return asked
    return None



