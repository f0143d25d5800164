"""The metrics table: counters the workers keep for /metrics, in shared memory.

One row per scoreboard row (the same index: a worker writes the row of its scoreboard row
and nothing else), plus PAST, where the master folds a worker's row when it reaps the
worker.  A total is PAST plus the rows of the workers alive, so it only ever grows: a
reload's new generation adds to it, a dead worker's counts stay in it, and the table is
a memfd that `mpmctl upgrade` hands to the next master (like the scoreboard), so an upgrade
keeps it too.  A row is a block of per-worker counters, then one block per route:

    worker block    connections accepted, tunnels opened / closed by end reason / handed
                    over (sent, adopted), requests refused by reason, TLS handshakes (done,
                    failed), those done that resumed a session, the hand-over pause histogram,
                    idle keep-alive connections handed over (sent, adopted)
    route block     requests by status class and duration bucket (one matrix: a request is
                    one increment, read as requests by class and as the duration histogram),
                    backend errors by reason, bytes received and sent (client side, heads
                    included)

and in the float column `seconds`: the hand-over pause sum, then each route's duration sum.
Histogram cells count one bucket each (not cumulative: an observation is one increment);
the reader accumulates them.

Routes are named in a registry here (`route_name`), written by the master before it forks a
generation: a route keeps its id across reloads as long as its name (prefix or pattern)
stays, so its series carry on.  Id 0 is "no route" (what is answered before routing: a
malformed head, a 404); when ROUTES names have been used, further ones count under the
last id, "(other)".  A route is never given those two ids, and a pattern that is literally
"-" or "(other)" (or starts with "~") is labelled with a "~" in front (`route_label`), so
every label names one series.

The master's own counters (reloads, worker restarts by cause) are in `master`, written by
the master only, under the lock (two masters share the table while an upgrade runs).
Folding and reading take the same lock, so a reader never sees a row both folded and
still in its place.
"""

from __future__ import annotations

import logging
import zlib
from bisect import bisect_left

from shm.scoreboard import ROWS
from shm.table import LayoutMismatch, SharedTable

log = logging.getLogger("mpm.master")

PAST = ROWS                       # the row that holds the counts of workers gone
ROUTES = 64                       # route names a master lineage can tell apart
NO_ROUTE, OTHER_ROUTE = 0, ROUTES - 1
ROUTE_NAME_WIDTH = 192

# Seconds; Prometheus's usual spread, with the sub-millisecond end a proxy lives in.
DURATION_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
HANDOVER_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

CODE_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
BACKEND_ERRORS = ("unavailable", "bad_gateway", "timeout")        # our own 503, 502, 504
TUNNEL_ENDS = ("closed", "reset", "idle_timeout", "worker_stopping", "send_failed", "recv_failed", "other")
REFUSALS = ("malformed", "method", "limits", "timeout", "no_route", "other")
HANDOVER_SIDES = ("sent", "adopted")
TLS_RESULTS = ("ok", "failed")
RELOAD_RESULTS = ("ok", "failed")
RESTART_CAUSES = ("signal", "exit", "watchdog", "recycle")


def _offsets(fields) -> tuple[dict, int]:
    offsets, at = {}, 0
    for name, count in fields:
        offsets[name] = at
        at += count
    return offsets, at


W, WORKER_INTS = _offsets((
    ("accepted", 1), ("tunnels_opened", 1), ("tunnels_closed", len(TUNNEL_ENDS)),
    ("handed_over", len(HANDOVER_SIDES)), ("refused", len(REFUSALS)), ("tls", len(TLS_RESULTS)),
    ("tls_reused", 1), ("handover_pause", len(HANDOVER_BOUNDS) + 1), ("clients_handed_over", len(HANDOVER_SIDES))))
BUCKETS = len(DURATION_BOUNDS) + 1              # the last one is +Inf
R, ROUTE_INTS = _offsets((
    ("requests", len(CODE_CLASSES) * BUCKETS),    # [class * BUCKETS + bucket]
    ("backend_errors", len(BACKEND_ERRORS)), ("received", 1), ("sent", 1)))
ROW_INTS = WORKER_INTS + ROUTES * ROUTE_INTS
ROW_FLOATS = 1 + ROUTES                           # hand-over pause sum, then a duration sum per route
M, MASTER_INTS = _offsets((("reloads", len(RELOAD_RESULTS)), ("restarts", len(RESTART_CAUSES))))


def route_base(route_id: int) -> int:
    """Where route `route_id`'s block starts in a row."""
    return WORKER_INTS + route_id * ROUTE_INTS


def bucket(bounds: tuple, seconds: float) -> int:
    """The histogram cell an observation goes to (`le` semantics: the first bound >= it)."""
    return bisect_left(bounds, seconds)


RESERVED_LABELS = ("-", "(other)")


def route_label(name: str) -> str:
    """A route's `route` label: its name, with "~" in front when the name is a reserved
    label or itself starts with "~" (a regex may be anything; paths start with "/")."""
    return "~" + name if name in RESERVED_LABELS or name.startswith("~") else name


def _route_of(label: str) -> str:
    return label[1:] if label.startswith("~") else label


def _name_bytes(name: str) -> bytes:
    """A route's name as the registry stores it; a long regex keeps its start and a checksum."""
    raw = name.encode("utf-8", "replace")
    if len(raw) <= ROUTE_NAME_WIDTH:
        return raw
    return raw[:ROUTE_NAME_WIDTH - 9] + b"~" + b"%08x" % zlib.crc32(raw)


class WorkerRow:
    """What a worker gets: its row's integer and float cells, and the id of each route name."""

    __slots__ = ("counts", "seconds", "route_ids")

    def __init__(self, counts, seconds, route_ids: dict[str, int]):
        self.counts = counts
        self.seconds = seconds
        self.route_ids = route_ids


def scratch_row(route_names=()) -> WorkerRow:
    """A private row nobody reads: for a worker started without a master (unit tests)."""
    ids = {name: min(i + 1, OTHER_ROUTE) for i, name in enumerate(route_names)}
    return WorkerRow(memoryview(bytearray(8 * ROW_INTS)).cast("q"),
                     memoryview(bytearray(8 * ROW_FLOATS)).cast("d"), ids)


class Totals:
    """One summed row (`ints`, `floats`, laid out as a worker's) and the master's counters."""

    __slots__ = ("ints", "floats", "master")

    def __init__(self, ints: list, floats: list, master: list):
        self.ints = ints
        self.floats = floats
        self.master = master

    def worker(self, field: str, count: int = 1) -> list:
        return self.ints[W[field]:W[field] + count]

    def route(self, route_id: int, field: str, count: int = 1) -> list:
        start = route_base(route_id) + R[field]
        return self.ints[start:start + count]

    def requests_by_class(self, route_id: int) -> list:
        cells = self.route(route_id, "requests", len(CODE_CLASSES) * BUCKETS)
        return [sum(cells[k * BUCKETS:(k + 1) * BUCKETS]) for k in range(len(CODE_CLASSES))]

    def duration_buckets(self, route_id: int) -> list:
        cells = self.route(route_id, "requests", len(CODE_CLASSES) * BUCKETS)
        return [sum(cells[b::BUCKETS]) for b in range(BUCKETS)]

    def duration_sum(self, route_id: int) -> float:
        return self.floats[1 + route_id]

    @property
    def handover_pause_sum(self) -> float:
        return self.floats[0]

    def master_counts(self, field: str, count: int) -> list:
        return self.master[M[field]:M[field] + count]


class MetricsTable(SharedTable):
    """Created by the master before it forks (or inherited from the master it replaces)."""

    def __init__(self, fd: int | None = None):
        columns = [("routes_used", "q", 1), ("route_name", ROUTE_NAME_WIDTH, ROUTES),
                   ("master", "q", MASTER_INTS),
                   ("counts", "q", (ROWS + 1) * ROW_INTS), ("seconds", "d", (ROWS + 1) * ROW_FLOATS)]
        try:
            super().__init__("mpm-metrics", columns, fd)
        except LayoutMismatch as exc:
            log.warning("%s: metrics start from zero", exc)
            super().__init__("mpm-metrics", columns)
        if self.routes_used[0] == 0:
            self.set_bytes("route_name", NO_ROUTE, b"-")
            self.set_bytes("route_name", OTHER_ROUTE, b"(other)")
            self.routes_used[0] = 1

    # The lock (SharedTable.lock) is for folds, reads and the master's counters: never a worker's.

    # -- routes ---------------------------------------------------------------------------------
    def register_routes(self, names) -> dict[str, int]:
        """name -> id for a generation's routes, adding the names not seen before; the names of
        earlier generations are in it too (a tunnel handed over keeps its route's series)."""
        self.lock()
        try:
            # never NO_ROUTE (nor OTHER_ROUTE, past routes_used): a route named "-" is not "no route"
            known = {self.get_bytes("route_name", i): i for i in range(NO_ROUTE + 1, self.routes_used[0])}
            ids = {_route_of(raw.decode("utf-8", "replace")): index for raw, index in known.items()}
            for name in names:
                raw = _name_bytes(route_label(name))
                index = known.get(raw)
                if index is None:
                    index = self.routes_used[0]
                    if index >= OTHER_ROUTE:
                        index = OTHER_ROUTE
                    else:
                        self.set_bytes("route_name", index, raw)
                        self.routes_used[0] = index + 1
                        known[raw] = index
                ids[name] = index
            return ids
        finally:
            self.unlock()

    def route_names(self) -> list[tuple[int, str]]:
        """(id, name) of every route counted so far, "(other)" last when it was needed."""
        used = self.routes_used[0]
        names = [(i, self.get_bytes("route_name", i).decode("utf-8", "replace")) for i in range(used)]
        return names + [(OTHER_ROUTE, "(other)")] if used >= OTHER_ROUTE else names

    # -- rows -----------------------------------------------------------------------------------
    def worker_row(self, row: int, route_ids: dict[str, int]) -> WorkerRow:
        return WorkerRow(self.counts[row * ROW_INTS:(row + 1) * ROW_INTS],
                         self.seconds[row * ROW_FLOATS:(row + 1) * ROW_FLOATS], route_ids)

    def fold(self, row: int) -> None:
        """A worker is gone (or its row is about to be reused): its counts join PAST.  The
        tunnels its row still counts open (opened and adopted, less handed over and closed)
        ended with it, a close nobody counted when it was killed: counted closed as "other"
        (else opened minus closed stayed above the tunnels open for the life of the server:
        soak review 2026-12-05 #2)."""
        self.lock()
        try:
            self._end_tunnels_left(row * ROW_INTS)
            for column, width in ((self.counts, ROW_INTS), (self.seconds, ROW_FLOATS)):
                start, past = row * width, PAST * width
                values = column[start:start + width].tolist()
                if not any(values):
                    continue
                for i, value in enumerate(values):
                    if value:
                        column[past + i] += value
                        column[start + i] = 0
        finally:
            self.unlock()

    def _end_tunnels_left(self, base: int) -> None:
        counts, closed = self.counts, base + W["tunnels_closed"]
        handed = base + W["handed_over"]
        left = (counts[base + W["tunnels_opened"]] + counts[handed + HANDOVER_SIDES.index("adopted")]
                - counts[handed + HANDOVER_SIDES.index("sent")] - sum(counts[closed:closed + len(TUNNEL_ENDS)]))
        if left > 0:
            counts[closed + TUNNEL_ENDS.index("other")] += left

    def totals(self, rows) -> Totals:
        """Sums over PAST and `rows` (the rows of the workers alive)."""
        self.lock()
        try:
            ints = [self.counts[r * ROW_INTS:(r + 1) * ROW_INTS].tolist() for r in (PAST, *rows)]
            floats = [self.seconds[r * ROW_FLOATS:(r + 1) * ROW_FLOATS].tolist() for r in (PAST, *rows)]
            master = self.master.tolist()
        finally:
            self.unlock()
        return Totals([sum(cells) for cells in zip(*ints, strict=True)], [sum(cells) for cells in zip(*floats, strict=True)], master)

    # -- the master's own counters ---------------------------------------------------------------
    def count(self, field: str, index: int = 0) -> None:
        self.lock()
        try:
            self.master[M[field] + index] += 1
        finally:
            self.unlock()
