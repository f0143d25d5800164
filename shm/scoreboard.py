"""The scoreboard: a fixed table in shared memory, one row per worker process.

Like Apache's `scoreboard.h`, every field is named for what an operator reads in
`mpmctl status`.  The master creates it before forking (a memfd, which every worker
inherits mapped and `mpmctl upgrade` passes to the next master), gives each worker
process a free row, and frees the row when it reaps the process.  A worker writes only
its own row; the master only reads rows and clears them.
"""

from __future__ import annotations

import logging
import time

from shm.table import LayoutMismatch, SharedTable

ROWS = 1024   # rows for every generation at once: ServerLimit is capped at 256 (see conf)

STATES = ("free", "starting", "ready", "full", "stopping", "exiting")
_STATE_CODE = {name: code for code, name in enumerate(STATES)}
# moved: connections and tunnels this worker passed to its successor while it stopped;
# tls_full, tls_resumed: TLS handshakes completed, in full and resuming a session;
# h2_connections (among `connections`) and the streams open on them (RFC 8441 ones among `tunnels`)
_COUNTS = ("connections", "tunnels", "requests", "bytes_in", "bytes_out", "tls_failures", "moved",
           "tls_full", "tls_resumed", "h2_connections", "h2_streams")

log = logging.getLogger("mpm.master")


def _columns(rows: int) -> list:
    return [
        ("pid", "q", rows),           # 0: the row is free
        ("generation", "q", rows),
        ("slot", "q", rows),          # the worker slot (ServerLimit index) within its generation
        ("state", "q", rows),         # STATES; "full" = at capacity, not accepting (Apache's "busy" means serving)
        *((name, "q", rows) for name in _COUNTS),
        ("started", "d", rows),       # wall-clock times
        ("updated", "d", rows),       # the worker's heartbeat: it publishes every 0.5 s
    ]


class ScoreboardRow:
    """What a worker gets: `publish(...)` writes its own row and nothing else."""

    __slots__ = ("_board", "_index")

    def __init__(self, board: Scoreboard, index: int):
        self._board = board
        self._index = index

    def publish(self, state: str, connections: int, tunnels: int, requests: int,
                bytes_in: int, bytes_out: int, tls_failures: int = 0, moved: int = 0, tls_full: int = 0,
                tls_resumed: int = 0, h2_connections: int = 0, h2_streams: int = 0) -> None:
        board, i = self._board, self._index
        board.state[i] = _STATE_CODE[state]
        board.connections[i] = connections
        board.tunnels[i] = tunnels
        board.requests[i] = requests
        board.bytes_in[i] = bytes_in
        board.bytes_out[i] = bytes_out
        board.tls_failures[i] = tls_failures
        board.moved[i] = moved
        board.tls_full[i] = tls_full
        board.tls_resumed[i] = tls_resumed
        board.h2_connections[i] = h2_connections
        board.h2_streams[i] = h2_streams
        board.updated[i] = time.time()


class Scoreboard(SharedTable):
    """Inherited (`fd`) from the master we replace, so old and new workers see each other
    during an upgrade (that is how an old worker finds the successor its tunnels go to)."""

    def __init__(self, rows: int = ROWS, fd: int | None = None):
        self.rows = rows
        self.inherited = fd is not None     # the table the master we replace writes in
        try:
            super().__init__("mpm-scoreboard", _columns(rows), fd)
        except LayoutMismatch as exc:
            log.warning("%s: starting a new one (the old workers' tunnels stay with them)", exc)
            super().__init__("mpm-scoreboard", _columns(rows))
            self.inherited = False
        self.owner = [0] * rows          # master's own view: pid holding each row (0 = free)

    def claim(self, generation: int, slot: int) -> int:
        """Reserve a free row (before fork); the pid is filled in by `bind`.  A row is free
        when neither we nor another master sharing the table (an upgrade) holds it."""
        for index, pid in enumerate(self.owner):
            if pid == 0 and self.pid[index] == 0:
                self.owner[index] = -1
                self._clear(index)
                self.generation[index] = generation
                self.slot[index] = slot
                self.state[index] = _STATE_CODE["starting"]
                self.started[index] = self.updated[index] = time.time()
                return index
        raise RuntimeError("scoreboard is full: too many worker processes at once")

    def free_rows(self) -> int:
        """Rows `claim` could take now."""
        return sum(1 for index, pid in enumerate(self.owner) if pid == 0 and self.pid[index] == 0)

    def bind(self, index: int, pid: int) -> None:
        self.owner[index] = pid
        self.pid[index] = pid

    def row_for_child(self, index: int, pid: int, generation: int, slot: int) -> ScoreboardRow:
        """In the forked worker: its row, stamped with its own start."""
        self.pid[index], self.generation[index], self.slot[index] = pid, generation, slot
        self.started[index] = time.time()
        return ScoreboardRow(self, index)

    def free(self, index: int) -> None:
        self.owner[index] = 0
        self._clear(index)

    def _clear(self, index: int) -> None:
        for name in ("pid", "generation", "slot", "state", *_COUNTS):
            getattr(self, name)[index] = 0
        self.started[index] = self.updated[index] = 0.0

    def read(self, index: int) -> dict:
        state = self.state[index]
        row = {"pid": self.pid[index], "generation": self.generation[index], "slot": self.slot[index],
               "state": STATES[state] if 0 <= state < len(STATES) else "unknown"}
        row.update((name, getattr(self, name)[index]) for name in _COUNTS)
        row["started"], row["updated"] = self.started[index], self.updated[index]
        return row

    def live_rows(self) -> list[dict]:
        """Every occupied row, read from the shared pages themselves (so it works in a
        worker, whose copy of `owner` froze at fork): how a stopping worker finds its successor."""
        return [self.read(index) for index in range(self.rows) if self.pid[index]]

    def newest_generation(self) -> int:
        """The highest generation of any row in use (0 when none is)."""
        return max((row["generation"] for _, row in self.live_rows_indexed()), default=0)

    def live_rows_indexed(self) -> list[tuple[int, dict]]:
        """(index, row) of every row in use, a worker's from its claim (before it has a pid) to
        its reaping: what /metrics sums the metrics table over."""
        return [(index, self.read(index)) for index in range(self.rows) if self.pid[index] or self.state[index]]
