"""A worker's counters for /metrics: its own row of the shared metrics table (shm/metrics.py).

A request costs three integer increments in shared memory (its cell of the route's status
class x duration bucket matrix, bytes received, bytes sent) and one float add (the
duration sum), nothing else: no lock (nobody else writes this row), no allocation, no
per-request labels (a route's id was decided by the master before the fork).  What a status means
is decided here from what the exchange already knows, so the HTTP code needs no calls of
its own: a 4xx or 5xx that no backend sent (`resp_started` false) is our own answer, a
refusal (malformed, limits, timeout, no route) or a backend error (503 no member, 502,
504).
"""

from __future__ import annotations

from bisect import bisect_left

from shm.metrics import (
    BUCKETS,
    CODE_CLASSES,
    DURATION_BOUNDS,
    HANDOVER_BOUNDS,
    NO_ROUTE,
    OTHER_ROUTE,
    REFUSALS,
    TUNNEL_ENDS,
    R,
    W,
    WorkerRow,
    route_base,
)

# Offsets from the start of a route's requests matrix, which is where `base` points.
_REQUESTS = R["requests"]
_BACKEND_ERRORS, _RECEIVED, _SENT = (R[name] - _REQUESTS for name in ("backend_errors", "received", "sent"))
_ACCEPTED, _OPENED, _CLOSED, _HANDED, _REFUSED, _TLS, _TLS_REUSED, _PAUSE, _CLIENTS_HANDED = (
    W["accepted"], W["tunnels_opened"], W["tunnels_closed"], W["handed_over"], W["refused"], W["tls"],
    W["tls_reused"], W["handover_pause"], W["clients_handed_over"])

# Our own answers, by status: what refused the request ...
_REFUSAL = {400: "malformed", 405: "method", 408: "timeout", 413: "limits", 414: "limits", 429: "limits",
            431: "limits", 404: "no_route"}
_REFUSAL_INDEX = {status: REFUSALS.index(reason) for status, reason in _REFUSAL.items()}
_OTHER_REFUSAL = REFUSALS.index("other")
# ... or which backend failure it reports (index into shm.metrics.BACKEND_ERRORS).
_BACKEND_ERROR = {503: 0, 502: 1, 504: 2}
# Tunnel.close reasons ("send failed: Broken pipe" is counted as send_failed).
_TUNNEL_END = {reason: TUNNEL_ENDS.index(reason.replace(" ", "_"))
               for reason in ("closed", "reset", "idle timeout", "worker stopping", "send failed", "recv failed")}
_OTHER_END = TUNNEL_ENDS.index("other")


def _cells(route_id: int) -> tuple[int, int]:
    """(where the route's requests matrix starts in the row, its duration sum's float cell)."""
    return route_base(route_id) + _REQUESTS, 1 + route_id


_NO_ROUTE, _OTHER_ROUTE = _cells(NO_ROUTE), _cells(OTHER_ROUTE)


class WorkerMetrics:
    __slots__ = ("counts", "seconds", "by_name")

    def __init__(self, row: WorkerRow):
        self.counts = row.counts
        self.seconds = row.seconds
        # Route name -> its cells, for every name the lineage counted (adopted tunnels' too).
        # A str caches its hash: one cheap dict lookup per request.
        self.by_name = {name: _cells(route_id) for name, route_id in row.route_ids.items()}

    # == per request ==========================================================================
    def cells(self, route) -> tuple[int, int]:
        """Where `route`'s requests are counted: its matrix's start in the row and its duration
        sum's cell (what the lane's C counts in: worker/_lane_count.c)."""
        return self.by_name.get(route.name, _OTHER_ROUTE)

    def install(self, install_counts) -> None:
        """Hand this row, and where a route's cells are in it, to the lane's C (worker.lane's
        `count_in_c`), which counts the exchanges it carries whole as `exchange` would."""
        install_counts(self.counts, self.seconds, DURATION_BOUNDS, BUCKETS, len(CODE_CLASSES), _RECEIVED, _SENT)

    def exchange(self, ex, elapsed: float) -> None:
        """One request answered (or a 101 that became a tunnel), `elapsed` seconds after its head."""
        route = ex.route
        if route is None:          # answered before routing, or refused by its route's policy
            route = getattr(ex, "refused_by", None)
        base, fcell = _NO_ROUTE if route is None else self.by_name.get(route.name, _OTHER_ROUTE)
        counts = self.counts
        status = ex.status
        klass = status // 100 if status < 600 else 0
        if not status and ex.aborted:
            klass = 4                    # logged as 499, nginx's "client closed the request"
        counts[base + klass * BUCKETS + bisect_left(DURATION_BOUNDS, elapsed)] += 1
        counts[base + _RECEIVED] += ex.received
        counts[base + _SENT] += ex.sent
        self.seconds[fcell] += elapsed
        if status >= 400 and not ex.resp_started:
            self._own_answer(status, base)

    def _own_answer(self, status: int, base: int) -> None:
        error = _BACKEND_ERROR.get(status)
        if error is not None:
            self.counts[base + _BACKEND_ERRORS + error] += 1
        else:
            self.counts[_REFUSED + _REFUSAL_INDEX.get(status, _OTHER_REFUSAL)] += 1

    def refused(self, reason: str) -> None:
        """A refusal that never became an exchange (a connection turned away at accept, say):
        `reason` is one of shm.metrics.REFUSALS."""
        self.counts[_REFUSED + REFUSALS.index(reason)] += 1

    # == connections and tunnels ==================================================================
    def accepted(self) -> None:
        self.counts[_ACCEPTED] += 1

    def tunnel_opened(self) -> None:
        self.counts[_OPENED] += 1

    def tunnel_closed(self, reason: str) -> None:
        end = _TUNNEL_END.get(reason)
        if end is None:
            end = _TUNNEL_END.get(reason.partition(":")[0], _OTHER_END)
        self.counts[_CLOSED + end] += 1

    def tunnel_bytes(self, tunnel, received: int, sent: int) -> None:
        """Bytes a tunnel relayed (counted as they pass, worker.process), on the route of the
        upgrade (the 101 counted the heads)."""
        context = tunnel.context
        name = context.get("route") if isinstance(context, dict) else None
        base = (self.by_name.get(name, _OTHER_ROUTE) if name is not None else _NO_ROUTE)[0]
        counts = self.counts
        counts[base + _RECEIVED] += received
        counts[base + _SENT] += sent

    def tunnel_handed_over(self) -> None:
        self.counts[_HANDED] += 1

    def tunnel_adopted(self, pause: float) -> None:
        counts = self.counts
        counts[_HANDED + 1] += 1
        counts[_PAUSE + bisect_left(HANDOVER_BOUNDS, pause)] += 1
        self.seconds[0] += pause

    def client_handed_over(self, adopted: bool) -> None:
        """An idle keep-alive connection sent to the successor, or adopted from a predecessor."""
        self.counts[_CLIENTS_HANDED + adopted] += 1

    def handshake(self, ok: bool) -> None:
        self.counts[_TLS + (0 if ok else 1)] += 1

    def handshake_resumed(self) -> None:
        """A handshake that resumed a session: counted done, as `handshake(True)` counts it, and resumed."""
        counts = self.counts
        counts[_TLS] += 1
        counts[_TLS_REUSED] += 1
