"""The master's side of the client table (shm/clients.py, per-client limits): made before
the first generation forks, kept across reloads so that the connections and tunnels of the
old generation still count against the new one's limits, replaced only when a reload asks
for another size (the old generation then finishes on its own table) or when the old
generations still hold so many of its per-worker cells that the new one would find none
(then, too, the new generation counts on a table of its own), and cleared of the cells of
workers that are gone at every housekeeping tick."""

from __future__ import annotations

import logging

from shm.clients import ClientTable, cells_for

log = logging.getLogger("mpm.master")


class ClientTables:
    def __init__(self):
        self.table: ClientTable | None = None
        self.retired: list[ClientTable] = []
        self.pending: ClientTable | None = None     # made by `prepare` for the next generation

    def prepare(self, config, alive=()) -> None:
        """A reload's validate step: the new table the next generation needs, if it needs one,
        made now (a memfd and its mapping: EMFILE or ENOMEM refuse the reload instead of
        failing it after the commit).  Raises OSError."""
        self.abandon()
        if config.client_table_size and not self._reusable(config, alive):
            self.pending = ClientTable(config.client_table_size, cells_for(config.mpm.workers))

    def abandon(self) -> None:
        if self.pending is not None:
            self.pending.close()
            self.pending = None

    def _reusable(self, config, alive) -> bool:
        table, workers = self.table, config.mpm.workers
        if table is None or not table.fits(config.client_table_size, cells_for(workers)):
            return False
        # Old generations lingering on long requests (a few reloads within graceful_timeout)
        # may hold most cells: a worker that finds none would enforce no limit at all.
        table.release_dead(alive)
        free = sum(1 for cell in range(table.cells) if not table.cell_pid[cell])
        if free >= workers:
            return True
        log.warning("client table: the running generations hold %d of its %d worker cells; the new "
                    "generation counts on a table of its own (their connections do not count against "
                    "its limits while they finish)", table.cells - free, table.cells)
        return False

    def for_generation(self, config, alive=()) -> ClientTable | None:
        """The table the next generation's workers get (None: no per-client limits): the one
        `prepare` made, or the current one, or a new one.  `alive`: the pids of the workers
        running now (the old generations)."""
        if not config.client_table_size:
            self.abandon()
            return None
        table, self.pending = self.pending, None
        if table is None:
            if self._reusable(config, alive):
                return self.table
            table = ClientTable(config.client_table_size, cells_for(config.mpm.workers))
        if self.table is not None:
            self.retired.append(self.table)
        self.table = table
        return table

    def tick(self, alive) -> None:
        if self.table is not None:
            self.table.release_dead(alive)
        for table in list(self.retired):
            table.release_dead(alive)
            if not any(table.cell_pid[cell] for cell in range(table.cells_used[0])):
                self.retired.remove(table)
                table.close()

    def summary(self) -> dict | None:
        return self.table.summary() if self.table is not None else None

    def close_in_child(self) -> None:
        """A worker keeps only the table it is given."""
        for table in self.retired:
            table.close()
        self.retired = []
