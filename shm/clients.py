"""The client table: per-client counters shared by every worker, in a fixed-size table.

One row ("entry") per tracked client and scope: scope 0 is the client as a whole (its
connections, tunnels and request rate under `limits.per_client`), and a route with its own
`per_client` has a scope of its own (its own bucket and counts).  The master creates the
table before the first fork and keeps it across reloads (so the old generation's open
connections still count against the new one's limits); a reload that needs a different size
gets a new table.

Layout and who writes what, so that the hot path takes no lock:

    key_hi, key_lo, scope   the client's address (IPv4 mapped into IPv6, 128 bits) and scope
    epoch                   0: never used; else bumped each time the entry is (re)assigned, so
                            a worker's cached (entry, epoch) is checked with one read
    tat                     the request bucket (GCRA's "theoretical arrival time", CLOCK_MONOTONIC,
                            which every process shares): one float, read-modify-written by
                            whichever worker serves the request, without a lock
    seen                    last activity: eviction takes the entry idle the longest
    logged, refused         the last refusal log line, and refusals since (one line a second)
    conns, tunnels          per-worker *cells* (entry-major: [entry * cells + cell]): a worker
                            writes only its own cell, a reader sums them; exact, lock-free
    <totals>                per-cell counts of refusals and evictions, for `mpmctl status`

Why this split: connection and tunnel counts must return to exactly zero however the
processes interleave (a lost update would leak a slot for good), so they live in cells, as
the member table's counters do.  The bucket is one word that every worker must see change:
a lost update there (two workers updating one client's bucket within the same few hundred
nanoseconds) lets one request through and nothing more, and an aligned 8-byte store is never
torn on the machines we run on, so it goes without a lock ("atomic enough").  The lock (a
POSIX record lock on the memfd, dropped by the kernel if its holder dies) is taken only to
insert or evict an entry.

Entries live in buckets of WAYS consecutive rows chosen by a salted hash of the key (a CPU
cache's layout): a lookup reads at most WAYS rows, and an insert into a full bucket evicts
the entry of that bucket idle the longest (no connection, no tunnel in any cell).  A bucket
whose every entry is busy leaves the newcomer untracked (counted): the limits fail open
rather than refuse a client for want of a row.  Evicting an idle entry forgets its bucket:
the client starts again with a full burst.

Memory: 8 words per entry plus 2 per cell, about 0.2 KB with 8 cells; 16,384 entries by
default, 3 MiB of shared memory, touched only as entries are used.
"""

from __future__ import annotations

import random

from shm.table import SharedTable, WorkerCells

WAYS = 8
TOTALS = ("refused_connections", "refused_tunnels", "refused_requests", "evicted", "untracked")
CONNS, TUNNELS = "conns", "tunnels"


def _columns(entries: int, cells: int) -> list:
    return [("salt", "q", 1), ("ident", "q", 1), ("cells_used", "q", 1), ("cell_pid", "q", cells),
            ("key_hi", "q", entries), ("key_lo", "q", entries), ("scope", "q", entries), ("epoch", "q", entries),
            ("refused", "q", entries),
            ("tat", "d", entries), ("seen", "d", entries), ("logged", "d", entries),
            (CONNS, "q", entries * cells), (TUNNELS, "q", entries * cells),
            *((name, "q", cells) for name in TOTALS), *((name + "_past", "q", 1) for name in TOTALS)]


def cells_for(workers: int) -> int:
    """Cells for a generation of `workers`: room for a reload's old generation, a recycled
    worker's replacement and a hand-over at once."""
    return min(max(4 * workers, 8), 256)


class ClientTable(WorkerCells, SharedTable):
    def __init__(self, entries: int, cells: int):
        self.entries = entries - entries % WAYS or WAYS
        self.buckets = self.entries // WAYS
        self.cells = cells
        super().__init__("mpm-clients", _columns(self.entries, cells))
        self.salt[0] = random.getrandbits(62)
        self.ident[0] = random.getrandbits(62) | 1

    def fits(self, entries: int, cells: int) -> bool:
        """Whether a configuration asking for this much can keep this table (a reload)."""
        return self.entries == entries - entries % WAYS and self.cells >= cells

    # -- cells (claimed in WorkerCells); the lock (SharedTable.lock) is for insert and evict only --
    def release_dead(self, alive) -> None:
        """Master: the cells of workers that are gone count nothing any more (their
        connections died with them, their moved tunnels are counted by whoever took them)."""
        used = None
        for cell in range(self.cells_used[0]):
            pid = self.cell_pid[cell]
            if pid and pid not in alive:
                # Only the entries ever assigned can count anything.  Clearing the cell's
                # whole stride wrote one word per page of the table, and made every page of
                # it resident (128 MiB at a reload of the largest table with 2 workers, 1.3 s
                # and 1 GiB with 16: review 2026-12-03-reload #5).
                if used is None:
                    used = [row for row, epoch in enumerate(self.epoch) if epoch]
                conns, tunnels, cells = self.conns, self.tunnels, self.cells
                for row in used:
                    conns[row * cells + cell] = tunnels[row * cells + cell] = 0
                for name in TOTALS:
                    getattr(self, name + "_past")[0] += getattr(self, name)[cell]
                    getattr(self, name)[cell] = 0
                self.cell_pid[cell] = 0

    # -- entries -----------------------------------------------------------------------------
    def bucket(self, hi: int, lo: int, scope: int) -> int:
        """The first row of the key's bucket: the same in every process (ints hash alike
        everywhere; the salt keeps a client from choosing addresses that share a bucket)."""
        return hash((hi ^ self.salt[0], lo, scope)) % self.buckets * WAYS

    def find(self, hi: int, lo: int, scope: int) -> int:
        """The key's row, or -1."""
        start = self.bucket(hi, lo, scope)
        key_hi, key_lo, scopes, epoch = self.key_hi, self.key_lo, self.scope, self.epoch
        for row in range(start, start + WAYS):
            if key_lo[row] == lo and key_hi[row] == hi and scopes[row] == scope and epoch[row]:
                return row
        return -1

    def busy(self, row: int) -> bool:
        start, stop = row * self.cells, row * self.cells + self.cells_used[0]
        return any(self.conns[start:stop]) or any(self.tunnels[start:stop])

    def insert(self, hi: int, lo: int, scope: int, now: float) -> tuple[int, bool]:
        """(row, evicted): the key's row, taking a free one or the one idle the longest;
        row -1 when every row of the bucket is busy."""
        self.lock()
        try:
            row = self.find(hi, lo, scope)
            if row >= 0:
                return row, False
            start = self.bucket(hi, lo, scope)
            victim, oldest = -1, 0.0
            for candidate in range(start, start + WAYS):
                if not self.epoch[candidate]:
                    victim = candidate
                    break
                if (victim < 0 or self.seen[candidate] < oldest) and not self.busy(candidate):
                    victim, oldest = candidate, self.seen[candidate]
            if victim < 0:
                return -1, False
            evicted = self.epoch[victim] != 0
            # The epoch moves first: a worker that looked this row up without the lock sees
            # the change when it checks the epoch again after counting itself in.
            self.epoch[victim] += 1
            self.key_hi[victim], self.key_lo[victim], self.scope[victim] = hi, lo, scope
            self.tat[victim] = self.logged[victim] = 0.0
            self.refused[victim] = 0
            self.seen[victim] = now
            return victim, evicted
        finally:
            self.unlock()

    # -- reading (master) ----------------------------------------------------------------------
    def count(self, column: str, row: int) -> int:
        start = row * self.cells
        return sum(getattr(self, column)[start:start + self.cells_used[0]])

    def summary(self) -> dict:
        """For `mpmctl status`: entries in use, clients with something open, refusals so far."""
        used = self.cells_used[0]
        tracked = sum(1 for value in self.epoch if value)
        active = sum(1 for row in range(self.entries) if self.epoch[row] and self.busy(row)) if used else 0
        totals = {name: getattr(self, name + "_past")[0] + sum(getattr(self, name)[:used]) for name in TOTALS}
        return {"entries": self.entries, "tracked": tracked, "active": active, **totals}
