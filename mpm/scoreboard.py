"""The scoreboard: a fixed table in shared memory, one row per worker process.

Like Apache's `scoreboard.h`, every field is named for what an operator reads in
`mpmctl status`.  The master creates it before forking (an anonymous shared mapping,
so every worker inherits the same pages), gives each worker process a free row, and
frees the row when it reaps the process.  A worker writes only its own row; the
master only reads rows and clears them.  A reader may see a row mid-update: every
field is a counter or a state, so a torn read is off by one update at most.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

ROWS = 1024   # rows for every generation at once: ServerLimit is capped at 256 (see conf)

# pid, generation, slot, state, connections, tunnels, requests, bytes_in, bytes_out, tls_failures,
# started, updated
_ROW = struct.Struct("<iiiiiiQQQQdd")
STATES = ("free", "starting", "ready", "busy", "stopping", "exiting")
_STATE_CODE = {name: code for code, name in enumerate(STATES)}


class ScoreboardRow:
    """What a worker gets: `publish(...)` writes its own row and nothing else."""

    __slots__ = ("_map", "_offset", "_ident")

    def __init__(self, shared: mmap.mmap, index: int, pid: int, generation: int, slot: int, started: float):
        self._map = shared
        self._offset = index * _ROW.size
        self._ident = (pid, generation, slot, started)

    def publish(self, state: str, connections: int, tunnels: int, requests: int,
                bytes_in: int, bytes_out: int, tls_failures: int = 0) -> None:
        pid, generation, slot, started = self._ident
        _ROW.pack_into(self._map, self._offset, pid, generation, slot, _STATE_CODE[state], connections,
                       tunnels, requests, bytes_in, bytes_out, tls_failures, started, time.time())


class Scoreboard:
    """Backed by a memfd rather than an anonymous mapping so that `mpmctl upgrade` can hand
    it to the next master: old and new workers then see each other (that is how an old
    worker finds the successor its tunnels go to)."""

    def __init__(self, rows: int = ROWS, fd: int | None = None):
        self.rows = rows
        size = rows * _ROW.size
        if fd is None:
            fd = os.memfd_create("mpm-scoreboard")
            os.ftruncate(fd, size)
        self.fd = fd
        self.shared = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        self.owner = [0] * rows          # master's own view: pid holding each row (0 = free)

    def claim(self, generation: int, slot: int) -> int:
        """Reserve a free row (before fork); the pid is filled in by `bind`.  A row is free
        when neither we nor another master sharing the table (an upgrade) holds it."""
        for index, pid in enumerate(self.owner):
            if pid == 0 and struct.unpack_from("<i", self.shared, index * _ROW.size)[0] == 0:
                self.owner[index] = -1
                _ROW.pack_into(self.shared, index * _ROW.size, 0, generation, slot, _STATE_CODE["starting"],
                               0, 0, 0, 0, 0, 0, time.time(), time.time())
                return index
        raise RuntimeError("scoreboard is full: too many worker processes at once")

    def bind(self, index: int, pid: int) -> None:
        self.owner[index] = pid
        struct.pack_into("<i", self.shared, index * _ROW.size, pid)

    def row_for_child(self, index: int, pid: int, generation: int, slot: int) -> ScoreboardRow:
        return ScoreboardRow(self.shared, index, pid, generation, slot, time.time())

    def free(self, index: int) -> None:
        self.owner[index] = 0
        _ROW.pack_into(self.shared, index * _ROW.size, *([0] * 10), 0.0, 0.0)

    def read(self, index: int) -> dict:
        (pid, generation, slot, state, connections, tunnels, requests, bytes_in, bytes_out, tls_failures,
         started, updated) = _ROW.unpack_from(self.shared, index * _ROW.size)
        return {"pid": pid, "generation": generation, "slot": slot,
                "state": STATES[state] if 0 <= state < len(STATES) else "unknown",
                "connections": connections, "tunnels": tunnels, "requests": requests,
                "bytes_in": bytes_in, "bytes_out": bytes_out, "tls_failures": tls_failures,
                "started": started, "updated": updated}

    def live_rows(self) -> list[dict]:
        """Every occupied row, read from the shared pages themselves (so it works in a
        worker, whose copy of `owner` froze at fork): how a stopping worker finds its successor."""
        rows = []
        for index in range(self.rows):
            if struct.unpack_from("<i", self.shared, index * _ROW.size)[0]:
                rows.append(self.read(index))
        return rows

