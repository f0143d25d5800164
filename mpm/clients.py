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

    def for_generation(self, config, alive=()) -> ClientTable | None:
        """The table the next generation's workers get (None: no per-client limits).
        `alive`: the pids of the workers running now (the old generations)."""
        size = config.client_table_size
        if not size:
            return None
        workers = config.mpm.workers
        cells = cells_for(workers)
        table = self.table
        if table is not None and table.fits(size, cells):
            # Old generations lingering on long requests (a few reloads within graceful_timeout)
            # may hold most cells: a worker that finds none would enforce no limit at all.
            table.release_dead(alive)
            free = sum(1 for cell in range(table.cells) if not table.cell_pid[cell])
            if free >= workers:
                return table
            log.warning("client table: the running generations hold %d of its %d worker cells; the new "
                        "generation counts on a table of its own (their connections do not count against "
                        "its limits while they finish)", table.cells - free, table.cells)
        if table is not None:
            self.retired.append(table)
        self.table = ClientTable(size, cells)
        return self.table

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
