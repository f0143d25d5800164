"""The master's side of the client table (shm/clients.py, per-client limits): made before
the first generation forks, kept across reloads so that the connections and tunnels of the
old generation still count against the new one's limits, replaced only when a reload asks
for another size (the old generation then finishes on its own table), and cleared of the
cells of workers that are gone at every housekeeping tick."""

from __future__ import annotations

from shm.clients import ClientTable, cells_for


class ClientTables:
    def __init__(self):
        self.table: ClientTable | None = None
        self.retired: list[ClientTable] = []

    def for_generation(self, config) -> ClientTable | None:
        """The table the next generation's workers get (None: no per-client limits)."""
        per_client = config.limits.per_client
        if per_client is None or not per_client.any:
            return None
        cells = cells_for(config.mpm.workers)
        if self.table is None or not self.table.fits(per_client.table, cells):
            if self.table is not None:
                self.retired.append(self.table)
            self.table = ClientTable(per_client.table, cells)
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
