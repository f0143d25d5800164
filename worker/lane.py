"""The keep-alive lane: which connections the C moves (worker/_lane.c), and when (worker.laneowner is
the Python half of each).

An HTTP/1.1 client connection whose exchange ended with keep-alive, on a route to one plain
backend, enters the lane with the pooled backend connection that exchange used, pinned to it.
From then on the C reads each request head and each response; the Python runs twice per
request, in `lane_request` (the head judged by worker.http1, routed by worker.routing,
rewritten by the connection's head writer: the same code as in worker.exchange) and in
`lane_done` (counted and logged by the worker's `exchange_done`, as every exchange is; the line
of a combined-format access log comes written from the C, worker/_lane_log.c, and its /metrics
cells counted there, worker/_lane_count.c).
A small keep-alive request: 108,735 -> 47,135 instructions, 48.2 -> 30.9 µs of proxy CPU
under wrk (bench/RESULTS-2026-12-05.md).

A new connection enters too, before its first request (`enter_first`, when its TLS handshake
is done), while an idle connection waits for the backend of the last exchange on a route to one
backend (`pool.warm`): a client that opens a connection per request (API clients, S7c's) has its
one exchange carried here.  Its backend connection is taken when that request comes, an idle one
to the request's backend: a client that connects and sends nothing pins none (a flood of them
would otherwise hold a backend connection each, and make the pool open more for everyone else).
A request that says `Connection: close` is carried as well: its response head says so too (as
worker.response writes it), its connection is corked once that response is whole in hand (the
response, the close_notify and the FIN in one segment: worker/_lane_io.c's `lane_cork`) and
`lane_done` closes it.
A new connection's first head stays due by its client_header deadline whatever the lane does.
A new TLS connection (no PROXY header, no per-client limit) enters at its accept as one object,
worker.newcomer's Newcomer (`enter_new`): the C runs its handshake, then it becomes what a
ServerHandshake would have made when its client chose HTTP/2, or the ClientConnection and
LaneOwner of `enter_first` when it asks for more than one request and the close.
A resumed TLS connection with one request (S7c's): 3,408 -> 2,597 bytecodes, 2 % less proxy
CPU at one worker's saturation (median 490 against 499 µs; nginx 449), within the bench's noise
at two workers (bench/RESULTS-2026-12-05-first.md).

A TLS client enters too (`TLS`): the C reads and writes it through its SSL object, found as
conf.readahead finds it, once nothing waits in that object (it would wait unseen by epoll);
whatever the C gives back, the SSL object may hold more behind it, and `_drain_tls` reads it.
HTTPS keep-alive requests (bench S1s): 0.63-0.68x the proxy CPU of the Python path, 1.06-1.26x
nginx's, in two runs (bench/RESULTS-2026-12-05-tls.md).

Whatever the lane does not carry goes back to worker.client and worker.exchange at the point
it shows, with what the C read (`lane_back`): a request it would not route the same way or
that has a body, a head in pieces or pipelined heads, a response of another shape, a backend
that failed before its response (a new connection's first request that goes elsewhere also
makes the next new ones wait until another exchange names a backend).  The connection leaves
the lane then; its next keep-alive exchange may bring it back.  Closes, deadlines and stops
take it out too (LaneClient).

The pinned backend connection is that client's while it stays, as HAProxy keeps a server
connection with its session, but only while the client keeps sending: after PARK seconds
without a request the connection leaves the lane and the backend connection goes back to the
pool, whose bound on idle connections then applies (a thousand idle browsers must not hold a
thousand backend connections).  The client's next request comes back through worker.exchange.

MPM_NATIVE_LANE=0, or no compiled worker._lane or worker._heads: every exchange is Python's.
MPM_NATIVE_LANE_TLS=0, or no conf._readahead: TLS clients' are.
MPM_NATIVE_LANE_COUNT=0: the lane's exchanges are counted for /metrics by Python, not by its C
(worker/_lane_count.c).
"""

from __future__ import annotations

import os
from ssl import SSLSocket

from conf import readahead
from worker.admission import Admission
from worker.client import HEAD_READ, ClientConnection
from worker.laneowner import LANE_IDLE, LaneClient, LaneOwner
from worker.newcomer import Newcomer
from worker.response import FIRST_READ
from worker.tls import NATIVE_ACCEPT

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
COUNT = NATIVE and os.environ.get("MPM_NATIVE_LANE_COUNT", "1") != "0"


def count_in_c(metrics) -> None:
    """The lane's exchanges counted by its C in `metrics`' row (worker/_lane_count.c): a worker's,
    once, before its loop runs."""
    if COUNT:
        metrics.install(_lane.install_counts)


def eligible(client, exchange) -> bool:
    """Whether the lane can carry `client`'s next exchanges, as `exchange` ended them."""
    route, origin, worker = exchange.route, exchange.origin, client.worker
    return (client.__class__ is ClientConnection and origin is not None and origin is route.origin
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
    if conn is not None:
        _enter(client, conn)


def enter_first(client) -> bool:
    """A new connection (its TLS handshake done): into the lane before its first request, when
    the lane can carry it and an idle connection waits for the backend whose route's last
    exchange ended last (`pool.warm`, the likeliest to take this one too).  No backend
    connection is pinned until the request comes: then it takes an idle one to its route's
    backend (`LaneOwner.lane_request`), so a client that connects and sends nothing holds none.
    A first request that finds none, or is not the lane's, goes back to worker.exchange as any
    other (and forgets that backend until the next exchange names one again)."""
    worker = client.worker
    origin = worker.pool.warm
    if origin is None or origin.tls or origin.proxy_protocol or client.limiter is not None or worker.stopping:
        return False
    tls = client.ep.tls
    if tls and not TLS or not worker.pool.idle.get(origin.key):     # none waits: worker.exchange opens one
        return False
    owner = _enter(client, None)
    if tls and readahead.buffered(client.ep.sock):     # it came with the handshake's last flight
        client.loop.call_soon(owner.kick)
    return True


def enter_new(worker, sock, client_ip: bytes) -> bool:
    """A new TLS connection, just accepted (no PROXY header, no per-client limit): carried from
    its handshake on as one worker.newcomer.Newcomer when `enter_first` would take it once its
    handshake is done."""
    origin = worker.pool.warm
    if origin is None or origin.tls or origin.proxy_protocol or worker.stopping \
            or not worker.pool.idle.get(origin.key) or sock.__class__ is not SSLSocket or sock._sslobj is None:
        return False
    Newcomer(worker, sock, client_ip, Lane)
    return True


def _enter(client, conn) -> LaneOwner:
    """Into the lane, with `conn` pinned (None: a new connection's, until its first request)."""
    owner = LaneOwner(client, conn)
    loop = client.loop
    ep = client.ep
    owner.lane = lane = Lane(loop.epoll_fd, ep.fd, -1 if conn is None else conn.fd, owner, HEAD_READ, FIRST_READ,
                             readahead.ssl_pointer(ep.sock._sslobj) if ep.tls else 0)
    access = client.worker.access
    if access is not None and not access.json:      # its lines in C (worker/_lane_log.c)
        lane.log_client = client.client_ip + b" - - "
    client.lane = owner
    deadline = client.since + owner.park
    if deadline < client.deadline:
        client.deadline = deadline
    client.__class__ = LaneClient
    ep.hand_to(lane.on_client)
    if conn is not None:
        conn.hand_to(lane.on_backend)
    return owner


def leave_all(clients) -> None:
    """A stop: the connections between requests leave the lane now, the others at their
    response head (worker.response then says `Connection: close` unless a successor takes the
    connection) or, already past it, once it is out (`lane_done`): the hand-over finds
    Python's connections only."""
    for client in list(clients):
        if client.__class__ is Newcomer:
            client = client.grow().client
        if client.__class__ is LaneClient:
            if client.lane.lane.state == LANE_IDLE:
                client.lane.leave()
            else:
                client.lane.lane.stop()       # its response head goes to worker.response


# worker.client offers every keep-alive connection between requests here (`exchange_done`), and
# every new one (`__init__`), when the C lane is there.
if NATIVE:
    ClientConnection.to_lane = enter
    ClientConnection.lane_first = enter_first
if TLS and NATIVE_ACCEPT:       # (MPM_NATIVE_ACCEPT=0: no handshake round in C, review 2026-12-06-handshake #3)
    Admission.newcomer = staticmethod(enter_new)
