"""From accept to the first request: the PROXY header, TLS, per-client connection limits,
and making room when the worker is full.

    accepted ──proxy_protocol──> HeaderReader ──header──┐
        │                                               v
        └─────────────────────────────────────────> counted ──over the limit──> closed unread
                                                        │
                          (TLS: ServerHandshake, h2c: PrefaceSniffer, holding the count)
                                                        │
                                                        v
                            ClientConnection / H2Connection (open_client)

Overload (nginx's ngx_drain_connections, Apache event's closing of keep-alive connections
when busy): a worker at capacity used to stop accepting, so a few thousand connections that
never finish a head (slowloris) kept every new client waiting in the listen backlog.  Now a
full worker makes room for each new connection by closing, first, the connection that has
been sending its first request head the longest (or reading its PROXY header, or doing its
TLS handshake), then the keep-alive connection idle the longest (an HTTP/2 one with no
stream open is one).  Both hold nothing: no request has been read, no response is owed
(RFC 9112 §9.6 lets a server close an idle connection at any time; a client retries a
request it had not finished sending).  A
connection with a complete request is never closed for room, so it is never kept waiting
behind them; only when every connection is busy with a request does the worker stop
accepting, as before.  Connections accepted in the current loop turn are never the ones
closed (their head may be in the socket already).  One log line per LOG_INTERVAL says how
many were closed.
"""

from __future__ import annotations

import socket
import struct

from worker.client import ClientConnection
from worker.h2.connection import H2Connection
from worker.h2.h2c import PRIOR_KNOWLEDGE, PrefaceSniffer
from worker.limits import ClientLimits
from worker.proxyproto import HeaderReader
from worker.tls import ServerHandshake

LOG_INTERVAL = 10.0
_RESET = struct.pack("ii", 1, 0)       # SO_LINGER on, 0 s: close() sends RST
_NOT_COUNTED = ()                      # the holds of a connection no limit counts


class Arrivals(dict):
    """An insertion-ordered set (a dict of None) with a set's add and discard: the oldest
    member is the first one iterated."""

    __slots__ = ()

    def add(self, item) -> None:
        self[item] = None

    def discard(self, item) -> None:
        self.pop(item, None)


class Admission:
    newcomer = None     # worker.lane.enter_new, where the lane carries new TLS connections from their accept

    def __init__(self, worker, client_table):
        self.worker = worker
        self.loop = worker.loop
        limits = worker.config.limits
        needed = worker.config.client_table_size or limits.trusted_proxies
        self.limits = ClientLimits(worker, client_table, limits) if needed else None
        self.unserved = Arrivals()    # ClientConnection / HeaderReader owing a first head, oldest first
        self.idle = Arrivals()        # keep-alive connections between requests, longest idle first
        self.proxied: dict = {}       # fd -> PROXY-carried addresses, while TLS handshakes
        self.closed_unserved = self.closed_idle = 0     # since the last log line
        self.logged_at = -LOG_INTERVAL

    # == the way in ======================================================================
    def accepted(self, sock, ip: bytes, context, proxy_protocol: bool) -> None:
        if self.proxied:
            self.proxied.pop(sock.fileno(), None)      # a previous owner of this fd whose handshake failed
        if proxy_protocol:
            HeaderReader(self.worker, sock, ip, context)
        else:
            self._start(sock, ip, context, None)

    def header_read(self, sock, peer: bytes, context, addresses, deadline: float) -> None:
        """The PROXY header is in: its address is the client's from now on.  `deadline`: the
        header's, which a plain HTTP/1.1 connection's head is due by too (one client_header
        from the accept; TLS has its handshake timeout, then client_header)."""
        self._start(sock, addresses[0] if addresses else peer, context, addresses, deadline)

    def _start(self, sock, ip: bytes, context, addresses, deadline: float | None = None) -> None:
        """Counted against its client's limit (over it: closed unread), then on to HTTP/1.1,
        the h2c preface or the TLS handshake, which carries the count (released if it fails).
        Counted before any handshake work: at accept, or once the PROXY header has named the
        client (nginx's stream limit_conn runs there too: after realip, before ssl)."""
        holds = _NOT_COUNTED
        limits = self.limits
        if limits is not None:
            holds = limits.open_connection(ip)
            if holds is None:
                self._refuse(sock)
                return
        worker = self.worker
        if context is None:
            self.open_client(sock, ip, False, addresses, holds, deadline=deadline)
        elif context is PRIOR_KNOWLEDGE:       # an h2c listener: the first bytes say which protocol
            worker.handshakes.add(PrefaceSniffer(worker, sock, ip, addresses, holds))
        elif addresses or limits is not None or self.newcomer is None or not self.newcomer(worker, sock, ip):
            if addresses:
                self.proxied[sock.fileno()] = addresses
            ServerHandshake(worker, sock, ip, context, holds)    # it adds itself to worker.handshakes
        # (else the keep-alive lane carries it from its handshake on, as one object: worker.newcomer)

    def _refuse(self, sock) -> None:
        try:
            # A reset, not a FIN: the client learns at once, and neither side keeps the
            # socket in TIME_WAIT (a flood of refused connections would fill it).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            sock.close()
        except OSError:
            pass
        self.worker.metrics.refused("limits")
        self.worker.connection_closed()

    def handshake_done(self, handshake) -> None:
        addresses = self.proxied.pop(handshake.fd, None) if self.proxied else None
        sock = handshake.sock
        holds, handshake.holds = handshake.holds, _NOT_COUNTED
        http2 = handshake.sslobj.selected_alpn_protocol() == "h2"       # (not ssl.py's wrapper of it)
        self.open_client(sock, handshake.client_ip, True, addresses, holds, http2)

    def open_client(self, sock, ip: bytes, tls: bool, addresses, holds, http2: bool = False,
                    deadline: float | None = None) -> None:
        """A connection ready for HTTP/1.1 or HTTP/2, with its count in the client table
        (`holds`, taken by `_start`)."""
        forwarded = self.trusts(ip)
        if http2:
            H2Connection(self.worker, sock, ip, tls, holds, addresses, forwarded)
        else:
            ClientConnection(self.worker, sock, ip, tls, holds, addresses, forwarded, deadline).opened(tls)

    def trusts(self, ip: bytes) -> bool:
        """Whether a connection from `ip` is a trusted proxy's (each request's X-Forwarded-For
        then names its client): asked when a connection opens here, and again of one another
        worker hands over, as this worker's `trusted_proxies` may differ from that one's."""
        limits = self.limits
        return limits is not None and bool(limits.trusted_networks) and limits.is_trusted(ip)

    # == overload ============================================================================
    def make_room(self) -> bool:
        """At capacity, with a new connection waiting to be accepted: close the connection that
        holds the least (see the module's comment).  False when there is none from an
        earlier loop turn."""
        now = self.loop.now
        victim = self._oldest_unserved(now)
        if victim is not None:
            self.closed_unserved += 1
        else:
            victim = next(iter(self.idle), None)
            if victim is None or victim.since >= now:
                return False
            self.closed_idle += 1
        victim.close()
        if now - self.logged_at >= LOG_INTERVAL:
            self.worker.log_error("warning", f"at capacity ({self.worker.capacity} connections): closed "
                                             f"{self.closed_unserved} connections still sending their first "
                                             f"request head and {self.closed_idle} idle keep-alive ones to make "
                                             f"room (since the last such line)")
            self.logged_at = now
            self.closed_unserved = self.closed_idle = 0
        return True

    def may_make_room(self) -> bool:
        """Whether some connection could be closed for room (now, or from the next loop turn)."""
        return bool(self.unserved or self.idle or self.worker.handshakes)

    def room(self) -> bool:
        """Whether `make_room` would find something to close now."""
        now = self.loop.now
        if self._oldest_unserved(now) is not None:
            return True
        idle = next(iter(self.idle), None)
        return idle is not None and idle.since < now

    def _oldest_unserved(self, now: float):
        victim = next(iter(self.unserved), None)
        since = victim.since if victim is not None else now
        handshake = next(iter(self.worker.handshakes), None)      # a TLS handshake or an h2c sniffer
        if handshake is not None and handshake.since < since:
            victim, since = handshake, handshake.since
        return victim if since < now else None

    # == tunnels ===================================================================================
    def tunnel_closed(self, tunnel) -> None:
        self._release(tunnel)

    def tunnel_moved(self, tunnel) -> None:
        """Handed to another worker: it counts the tunnel from now on (`tunnel_adopted`)."""
        self._release(tunnel)

    def tunnel_adopted(self, tunnel) -> None:
        """Counted here now: what the sender counted (`ClientLimits.adopt`), or, when it
        counted nothing (no limits in its generation, or no counter cell), the tunnel and its
        connection as a new one would be, so a reload that turns limits on counts the tunnels
        it hands over (review 2026-12-03-hostile #4).  Never refused: it is no new tunnel."""
        context, limits = tunnel.context, self.limits
        if limits is None or not isinstance(context, dict):
            return
        client = str(context.get("client", "")).encode()
        if context.get("limits"):
            holds = limits.adopt(client, context["limits"])
        elif limits.enabled:
            holds = limits.count_tunnel(client, str(context.get("peer", "")).encode() or client)
        else:
            return
        context["limits"] = limits.export(holds) if holds else None

    def _release(self, tunnel) -> None:
        context = tunnel.context
        if self.limits is not None and isinstance(context, dict) and context.get("limits"):
            self.limits.release(context["limits"]["holds"])
            context["limits"] = None
