"""Balancer members, chosen server-wide (mod_proxy_balancer, mod_lbmethod_*): a worker's side.

The members and what every process knows of them live in the shared member table
(`shm.members.MemberTable`, which the master owns); how a worker chooses among them is
`worker.lbpick.Picker` (one per balancer, the order of who may take a request is there);
here is what it writes back (`Balancers`: its own cell of counters, the error state a
failure puts a member in, and the counts of the tunnels open on a member).

Members found in DNS come and go while the worker runs: when the table's `membership`
word moves, the worker re-reads the rows whose `epoch` moved and builds a fresh Origin from
a `conf.model.Backend` for each new address (it never resolves anything itself), and the
pickers re-derive routes, sticky cookies and hash identities.
"""

from __future__ import annotations

import time

from shm.members import GONE, MemberTable
from worker.lbpick import Picker


class Balancers:
    """A worker's side: choose members, keep its own cell of counters, report failures."""

    def __init__(self, balancers, table: MemberTable | None, log_error, pid: int, origins=None):
        self.table = table = table if table is not None else MemberTable(balancers)
        self.log_error = log_error
        self.cell = table.claim(pid)
        if self.cell < 0:
            log_error("error", "balancer table: no free counter cell; this worker's connections are not counted")
            # counts go to scratch columns nobody reads
            self.busy, self.requests, self.bytes, self.failures = (
                memoryview(bytearray(8 * len(table.rows))).cast("q") for _ in range(4))
        else:
            self.busy, self.requests, self.bytes, self.failures = (
                table.cell_view(name, self.cell) for name in ("busy", "requests", "bytes", "failures"))
        self.pickers = {name: Picker(table, balancer) for name, balancer in table.balancers.items()}
        self.by_index = [self.pickers[row.balancer.name] for row in table.rows]
        # What `pick` returns for each member: the worker's precomputed Origin, or the backend itself.
        self.origins = origins if origins is not None else (lambda backend: backend)
        self.backends = [self.origins(row.member.backend) if row.member else None for row in table.rows]
        self.slot_rows = [row.index for row in table.rows if row.member is None]
        self.slot_set = frozenset(self.slot_rows)
        self.swept = -1               # the membership `expired` last looked at every tunnel under
        self.epochs = [-1 if row.member is None else 0 for row in table.rows]
        # Backends built for found members, by what they were built from: the same object for the
        # same address, so `origins` (which remembers them by identity) never grows without end.
        self.found_backends: dict[tuple, object] = {}
        # Told of an Origin no row uses any more (a member that left DNS): its idle pooled
        # connections and the worker's memory of it go (else one of each per address DNS ever gave).
        self.on_forget = None
        self.membership = -1
        if self.slot_rows:
            self._refresh()

    def _refresh(self) -> None:
        """The master changed who holds DNS rows: fresh Origins for them, and the pickers re-derive."""
        table = self.table
        self.membership = table.membership[0]
        moved = set()
        for i in self.slot_rows:
            epoch = table.epoch[i]
            if epoch == self.epochs[i]:
                continue
            self.epochs[i] = epoch
            moved.add(table.rows[i].balancer.name)
            old = self.backends[i]
            found = table.found(i)
            if found is None:
                self.backends[i] = None
            else:
                where = (table.rows[i].balancer.name, found)
                backend = self.found_backends.get(where)
                if backend is None:
                    backend = self.found_backends[where] = table.rows[i].discover.backend(*found)
                self.backends[i] = self.origins(backend)
            if old is not None and old not in self.backends:
                self._forget(old)
        for name in moved:
            self.pickers[name].refresh()

    def _forget(self, origin) -> None:
        backend = getattr(origin, "backend", origin)
        for where, built in list(self.found_backends.items()):
            if built is backend:
                del self.found_backends[where]
        if self.on_forget is not None:
            self.on_forget(origin)

    def pick(self, name: str, head, client_ip: bytes, tried=()) -> tuple:
        """(backend, member index, Set-Cookie line or None); (None, None, None) when nobody can
        take it.  The member counts the request as busy until `end`."""
        table = self.table
        if table.membership[0] != self.membership:
            self._refresh()
        index, cookie = self.pickers[name].pick(head, client_ip, tried)
        if index < 0:
            return None, None, None
        if self.epochs[index] != table.epoch[index]:      # the row changed hands during this pick
            self._refresh()
        origin = self.backends[index]
        if origin is None:
            return None, None, None
        self.busy[index] += 1
        self.requests[index] += 1
        return origin, index, cookie

    def end(self, index: int, nbytes: int) -> None:
        self.busy[index] -= 1
        self.bytes[index] += nbytes

    def failed(self, index: int, why: str, connect: bool, origin=None) -> None:
        """An attempt on the member failed; a connect failure puts it in error state (retry=).
        `origin`: what the exchange was sent to, when the row may have changed hands since."""
        if not self._holds(index, origin):
            return
        self.failures[index] += 1
        if connect:
            self._error(index, why)

    def response(self, index: int, status: int, origin=None) -> None:
        """failonstatus=: the response is relayed as it is, and the member goes into error state."""
        if status in self.by_index[index].failonstatus and self._holds(index, origin):
            self.failures[index] += 1
            self._error(index, f"status {status} is in failonstatus")

    def _holds(self, index: int, origin) -> bool:
        """Whether row `index` still holds the member `origin` was picked as: a DNS row may
        pass to a newcomer while an exchange on the member that left is under way, and the
        newcomer must not be put in error state for that one's failure."""
        if origin is None or index not in self.slot_set:
            return True
        if self.table.membership[0] != self.membership or self.epochs[index] != self.table.epoch[index]:
            self._refresh()
        return self.backends[index] is origin

    def _error(self, index: int, why: str) -> None:
        picker, table = self.by_index[index], self.table
        now = time.monotonic()
        already = table.error_until[index] > now
        table.error_at[index] = now
        table.error_until[index] = now + picker.retry
        if not already and picker.retry > 0:
            self.log_error("error", f"balancer {picker.name}: member {table.url(index)} in error state "
                                    f"for {picker.retry:g}s: {why}")

    def key(self, index: int) -> list:
        """How a tunnel's member is named to another worker (hand-over)."""
        return list(self.table.key(index))

    def tunnel_closer(self, index: int, on_close):
        """The tunnel's on_close: the member stops counting it, then the worker's own."""
        return _CountedClose(self, index, on_close)

    def count_traffic(self, tunnel) -> None:
        """What an open tunnel moved since it was last counted, onto its member's bytes: the
        worker's heartbeat calls this every few seconds (`TUNNEL_BYTES_BEATS`), so bytraffic
        sees a long WebSocket while it runs, as Apache's counts bytes as they move (before,
        only when the tunnel closed: a member moving 16 MiB through one looked idle)."""
        closer = tunnel.on_close
        if type(closer) is _CountedClose:
            total = tunnel.bytes_in + tunnel.bytes_out
            self.bytes[closer.index] += total - closer.counted
            closer.counted = total

    def moved(self, tunnel) -> None:
        """A tunnel handed to another worker: that worker counts it now (`adopt`), so this one
        stops, its bytes counted up to now (the adopter counts from here)."""
        self.count_traffic(tunnel)
        index = self._named(tunnel.context)
        if index is not None:
            self.busy[index] -= 1

    def _named(self, context) -> int | None:
        named = context.get("lb") if isinstance(context, dict) else None
        return self.table.find(tuple(named)) if isinstance(named, list) else None

    def adopt(self, context, on_close, counted: int):
        """A tunnel handed over by another worker: count it here, under the same member, from
        the `counted` bytes it has moved so far (its predecessor counted those)."""
        index = self._named(context)
        if index is None:
            return on_close
        self.busy[index] += 1
        closer = self.tunnel_closer(index, on_close)
        closer.counted = counted
        return closer

    def expired(self, tunnels) -> list:
        """The tunnels to close: those on a member that left DNS longer than `hold` ago (its row
        is gone), and those whose row has passed to a newcomer since they opened.  The master
        may give a gone row to a member that waits for one before this worker's heartbeat saw
        it gone; the departed member's tunnels are known then by their row, which names
        another member now (the master frees a row once nothing is open on it)."""
        table = self.table
        if not self.slot_rows:
            return []
        membership = table.membership[0]      # read first: a change while we look brings us back
        gone = {i for i in self.slot_rows if table.status[i] == GONE}
        if not gone and membership == self.swept:
            return []
        holders: dict[int, list] = {}
        closing = []
        for tunnel in tunnels:
            closer = tunnel.on_close
            index = closer.index if type(closer) is _CountedClose else -1
            if index not in self.slot_set:
                continue
            if index in gone:
                closing.append(tunnel)
                continue
            holder = holders.get(index)
            if holder is None:
                holder = holders[index] = list(table.key(index))
            if holder != tunnel.context.get("lb"):
                closing.append(tunnel)
        self.swept = membership
        return closing


class _CountedClose:
    """A tunnel's on_close while a member counts it as busy: the row it counts on (`expired`
    knows the tunnel's member by it), the bytes already on the member's count, then the
    worker's own on_close."""

    __slots__ = ("balancers", "index", "counted", "then")

    def __init__(self, balancers: Balancers, index: int, then):
        self.balancers = balancers
        self.index = index
        self.counted = 0
        self.then = then

    def __call__(self, tunnel, reason) -> None:
        self.balancers.end(self.index, tunnel.bytes_in + tunnel.bytes_out - self.counted)
        self.then(tunnel, reason)
