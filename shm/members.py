"""The balancer member table: every member of every balancer, one row each, in shared memory.

The master creates it before a generation forks (and a new one at each reload); every
worker picks from it, so all of them see the same picture:

    status        enabled | hot-standby | drain | disabled (the file, DNS, `mpmctl balancer set`),
                  gone (left DNS and its `hold` passed: workers close what is still open on it),
                  empty (a DNS row nobody holds)
    weight        loadfactor (the file, an SRV record's weight, `mpmctl balancer set`)
    health        up | down: written only by the master's health checks (mpm/health.py)
    error_until   passive detection: a connect failure, or a status listed in `failonstatus`,
                  puts the member in error state until then (retry=)
    lbstatus      the smooth weighted round-robin accumulator (byrequests, and bybusyness ties)

A balancer's rows are its static members, then `discover.slots` rows that the master fills
with what DNS answers (mpm/slots.py): name, address, family, port say who holds such a row,
and `epoch` changes whenever that changes, so a worker knows to rebuild what it derived
(its Origin, the member's route); `membership` (one word for the whole table) changes with
any epoch, so a worker notices with one read per pick.

Counters: busy (exchanges and tunnels open on the member), requests, bytes, failures.  No
counter is written by two processes: each worker process claims a *cell* when it starts and
writes only its cell (`Balancers` holds it as one strided view per counter, indexed by
member), and a reader sums the cells.  When a worker dies, the master folds its counts into
the row's `*_past` columns and clears the cell.  `lbstatus` is the one value several
workers read-modify-write: under a POSIX record lock on the memfd (Apache's balancer mutex;
the kernel drops it if its holder dies).  Times in `error_until`, `error_at`, `leaving` are
CLOCK_MONOTONIC, which every process on the host shares; `checked` and `seen` are wall time.
"""

from __future__ import annotations

import socket
import time

from shm.table import SharedTable, WorkerCells

STATUSES = ("enabled", "hot-standby", "drain", "disabled", "gone", "empty")
ENABLED, STANDBY, DRAIN, DISABLED, GONE, EMPTY = range(6)    # ordered: a pick takes <= STANDBY
UP, DOWN = 0, 1
CHECK_RESULTS = ("never", "pass", "fail")
COUNTERS = ("busy", "requests", "bytes", "failures")
NAME_MAX = 256                   # a DNS name is at most 253 characters


def _columns(rows: int, cells: int) -> list:
    per_row = [(name, "q", rows) for name in (
        "status", "weight", "health", "lbstatus", "hc_passes", "hc_fails", "hc_last",
        "requests_past", "bytes_past", "failures_past",         # counts of workers that are gone
        "epoch", "family", "port",
        "dns_weight", "dns_status",                              # what DNS said last (mpm/slots.py)
        "busy_elsewhere")]                                       # open in older generations' workers
    per_row += [(name, "d", rows) for name in ("error_until", "error_at", "checked", "seen", "leaving")]
    return [("membership", "q", 1), ("cells_used", "q", 1), ("cell_pid", "q", cells), *per_row,
            ("name", NAME_MAX, rows), ("address", 16, rows),
            *((name, "q", rows * cells) for name in COUNTERS)]     # member-major: [row * cells + cell]


class Row:
    """What does not change while a table lives: which balancer a row belongs to, and either
    its static member or the `Discover` whose finds it holds."""

    __slots__ = ("index", "balancer", "member", "discover")

    def __init__(self, index: int, balancer, member=None, discover=None):
        self.index = index
        self.balancer = balancer
        self.member = member
        self.discover = discover


class MemberTable(WorkerCells, SharedTable):
    """The master creates it (before fork) and reads it for `mpmctl`; workers claim a cell
    and pick from it; health checks write `health`; DNS discovery fills the slot rows."""

    def __init__(self, balancers, cells: int = 1, fd: int | None = None):
        """`fd`: the table of the master an upgrade replaces, read as its `layout()` named it."""
        self.balancers = balancers
        self.rows: list[Row] = []
        self.first: dict[str, int] = {}             # balancer -> its first row
        self.slots: dict[str, range] = {}           # balancer -> its DNS rows
        for balancer in balancers.values():
            self.first[balancer.name] = len(self.rows)
            for member in balancer.members:
                self.rows.append(Row(len(self.rows), balancer, member))
            start = len(self.rows)
            for _ in range(balancer.discover.slots if balancer.discover else 0):
                self.rows.append(Row(len(self.rows), balancer, discover=balancer.discover))
            self.slots[balancer.name] = range(start, len(self.rows))
        self.by_key = {(row.balancer.name, row.member.url): row.index for row in self.rows if row.member}
        self.cells = cells
        super().__init__("mpm-balancers", _columns(len(self.rows), cells), fd)
        for row in self.rows if fd is None else ():
            if row.member:
                self.status[row.index] = STATUSES.index(row.member.status)
                self.weight[row.index] = row.member.weight
            else:
                self.status[row.index] = EMPTY
        self._backends: dict[tuple, object] = {}     # (row, epoch) -> Backend, for the master's own use

    def layout(self) -> list:
        """What the next master (`mpmctl upgrade`) needs to read this table by its memfd: per
        balancer, its static members (URL, route) and its DNS source and slots, in row order."""
        return [[b.name, [[m.url, m.route] for m in b.members], list(b.discover.source) if b.discover else None,
                 len(self.slots[b.name])] for b in self.balancers.values()]

    def end(self, name: str) -> int:
        """One past the balancer's last row."""
        return self.slots[name].stop

    # -- cells; the lock (SharedTable.lock) guards the byrequests / bybusyness accumulators and claims
    def cell_view(self, counter: str, cell: int):
        """One cell's column of a counter, indexed by row: what a worker writes."""
        return getattr(self, counter)[cell::self.cells]

    def release_dead(self, alive) -> int:
        """Master: fold the cells of processes not in `alive` into the rows and free them.
        Returns how many cells are still held."""
        held = 0
        for cell in range(self.cells_used[0]):
            pid = self.cell_pid[cell]
            if not pid:
                continue
            if pid in alive:
                held += 1
                continue
            self.lock()
            try:
                for name in COUNTERS:
                    mine, past = self.cell_view(name, cell), getattr(self, name + "_past", None)
                    for i in range(len(self.rows)):
                        if past is not None:
                            past[i] += mine[i]
                        mine[i] = 0
                self.cell_pid[cell] = 0
            finally:
                self.unlock()
        return held

    # -- reading -------------------------------------------------------------------------------
    def total(self, index: int, counter: str) -> int:
        start = index * self.cells
        value = sum(getattr(self, counter)[start:start + self.cells_used[0]])
        past = getattr(self, counter + "_past", None)
        return value + past[index] if past is not None else value

    def busy_of(self, index: int) -> int:
        """What is open on the member server-wide, as a pick sees it (max_connections,
        bybusyness): in this table's workers, and in older generations' (`busy_elsewhere`,
        which the master rewrites every tick: a reload's old worker keeps its HTTP/2 streams
        and tunnels, which cannot be handed over)."""
        return self.busy_here(index) + self.busy_elsewhere[index]

    def busy_here(self, index: int) -> int:
        """What is open on the member in the workers of this table."""
        start = index * self.cells
        return sum(self.busy[start:start + self.cells_used[0]])

    def listed(self, name: str) -> list[int]:
        """Balancer `name`'s members now: its static rows, then the DNS rows somebody holds."""
        return [i for i in range(self.first[name], self.end(name)) if self.status[i] != EMPTY]

    def held(self, index: int) -> bool:
        """Static, or a DNS row somebody holds."""
        return self.status[index] != EMPTY

    def found(self, index: int) -> tuple[str, str, int] | None:
        """(name, address, port) of whoever holds DNS row `index`, None for a static or empty row."""
        if self.rows[index].member is not None or self.status[index] == EMPTY:
            return None
        family = self.family[index]
        packed = bytes(self.address[index * 16:(index * 16) + (16 if family == socket.AF_INET6 else 4)])
        return (self.get_bytes("name", index).decode("ascii", "replace"),
                socket.inet_ntop(family, packed), self.port[index])

    def url(self, index: int) -> str:
        row = self.rows[index]
        if row.member is not None:
            return row.member.url
        found = self.found(index)
        return row.discover.url(found[0], found[2]) if found else ""

    def route(self, index: int) -> str | None:
        row = self.rows[index]
        if row.member is not None:
            return row.member.route
        found = self.found(index)
        return row.discover.route(found[0], found[2]) if found else None

    def key(self, index: int) -> tuple[str, str]:
        """How a member is named across tables (reloads) and processes (hand-over)."""
        return (self.rows[index].balancer.name, self.url(index))

    def find(self, key) -> int | None:
        """The row of `key` (balancer, URL) if somebody holds it, static or found in DNS."""
        index = self.by_key.get(key)
        if index is not None:
            return index
        name = key[0]
        for index in self.slots.get(name, ()):
            if self.status[index] != EMPTY and self.url(index) == key[1]:
                return index
        return None

    def backend(self, index: int):
        """The `conf.model.Backend` a row stands for now (None for an empty row)."""
        row = self.rows[index]
        if row.member is not None:
            return row.member.backend
        cache_key = (index, self.epoch[index])
        backend = self._backends.get(cache_key)
        if backend is None:
            found = self.found(index)
            if found is None:
                return None
            if len(self._backends) > 4 * len(self.rows):
                self._backends.clear()
            backend = self._backends[cache_key] = row.discover.backend(*found)
        return backend

    def state(self, index: int, now: float | None = None) -> dict:
        """One member as `mpmctl balancer` shows it."""
        now = time.monotonic() if now is None else now
        row = self.rows[index]
        error = max(self.error_until[index] - now, 0.0)
        health = "down" if self.health[index] == DOWN else "up"
        status = STATUSES[self.status[index]]
        if status in ("disabled", "gone"):
            state = status
        elif health == "down":
            state = "down"
        elif error > 0:
            state = "error"
        else:
            state = "ok"
        checked, seen, leaving = self.checked[index], self.seen[index], self.leaving[index]
        discover = row.discover
        return {"url": self.url(index), "route": self.route(index), "status": status,
                "weight": self.weight[index], "state": state, "health": health, "error_for": round(error, 1),
                "busy": self.busy_of(index), "requests": self.total(index, "requests"),
                "bytes": self.total(index, "bytes"), "failures": self.total(index, "failures"),
                "max_connections": row.member.max_connections if row.member else 0,
                "source": "static" if discover is None else f"{discover.rtype} {discover.dns}",
                "seen": round(time.time() - seen, 1) if seen else None,
                "leaving_for": round(now - leaving, 1) if leaving else None,
                "check": {"last": CHECK_RESULTS[self.hc_last[index]],
                          "age": round(time.time() - checked, 1) if checked else None,
                          "passes": self.hc_passes[index], "fails": self.hc_fails[index]}}

    # -- the master's writes ---------------------------------------------------------------------
    def set_status(self, index: int, status: str) -> None:
        self.status[index] = STATUSES.index(status)

    def set_weight(self, index: int, weight: int) -> None:
        self.weight[index] = weight

    def clear_error(self, index: int) -> None:
        self.error_until[index] = 0.0

    def in_error(self, index: int, now: float) -> bool:
        return self.error_until[index] > now

    def record_check(self, index: int, ok: bool, passes: int, fails: int) -> str | None:
        """A health check's result; returns "down" or "up" when it changes the member's health."""
        if ok:
            self.hc_passes[index] += 1
            self.hc_fails[index] = 0
        else:
            self.hc_fails[index] += 1
            self.hc_passes[index] = 0
        self.hc_last[index] = 1 if ok else 2
        self.checked[index] = time.time()
        if self.health[index] == UP and not ok and self.hc_fails[index] >= fails:
            self.health[index] = DOWN
            return "down"
        if self.health[index] == DOWN and ok and self.hc_passes[index] >= passes:
            self.health[index] = UP
            self.clear_error(index)
            return "up"
        return None

    HEALTH_FIELDS = ("health", "error_until", "hc_passes", "hc_fails", "checked", "error_at", "hc_last")
    PASSIVE_FIELDS = ("error_until", "error_at")      # mod_proxy's error state (`retry`), checks or not

    def copy_health(self, src: MemberTable, src_index: int, index: int) -> None:
        # A verdict of health checks the balancer no longer has would hold for good (nothing
        # checks it again): without checks, only what a failed request said carries over.
        checked = self.rows[index].balancer.health is not None
        for name in self.HEALTH_FIELDS if checked else self.PASSIVE_FIELDS:
            getattr(self, name)[index] = getattr(src, name)[src_index]

    def carry_from(self, old: MemberTable) -> None:
        """After a reload: what is known of a static member's health stays true (by balancer and
        URL); statuses and weights come from the file again, counters start over.  (DNS rows
        are carried by the discovery, mpm/slots.py, which knows whether their source changed.)"""
        for row in self.rows:
            if row.member is None:
                continue
            index = old.by_key.get((row.balancer.name, row.member.url))
            if index is not None:
                self.copy_health(old, index, row.index)
