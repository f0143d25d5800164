"""Balancer members, chosen server-wide (mod_proxy_balancer, mod_lbmethod_*): a worker's side.

The members and what every process knows of them live in the shared member table
(`shm.members.MemberTable`, which the master owns); here is how a worker chooses among them
(`_Picker`, one per balancer) and what it writes back (`Balancers`: its own cell of
counters, and the error state a failure puts a member in).

Who may take a request, in order:
    1. a sticky request's member (the route in its cookie or URL parameter), if it is usable
       or draining; if it is not, the request fails over, or gets 503 under `nofailover`
    2. usable enabled members: health up, not in error state, under max_connections
    3. usable hot-standby members, only when step 2 found none
    4. members only in error state (Apache's forcerecovery), never one a health check
       holds down, nor one this request already failed on
and the method chooses among the members of the first step that has any.

Members found in DNS come and go while the worker runs: when the table's `membership`
word moves, the worker re-reads the rows whose `epoch` moved and builds a fresh Origin from
a `conf.model.Backend` for each new address (it never resolves anything itself), and the
pickers re-derive routes, sticky cookies and hash identities.
"""

from __future__ import annotations

import hashlib
import math
import re
import time

from shm.members import DRAIN, ENABLED, GONE, STANDBY, UP, MemberTable


def _ident(name: str):
    """A member's identity for hashing: its route (or URL), so instances with the same file agree."""
    return hashlib.blake2b(name.encode() + b"\0", digest_size=8)


class _Picker:
    """One balancer, as a worker chooses among its members."""

    __slots__ = ("table", "balancer", "name", "static", "slots", "indexes", "method", "routes", "cookies",
                 "insert", "cookie_re", "param_re", "nofailover", "failonstatus", "retry", "ident", "hash_source",
                 "hash_name", "hash_cookie_re", "max", "static_routes", "static_ident")

    def __init__(self, table: MemberTable, balancer):
        self.table = table
        self.balancer = balancer
        self.name = balancer.name
        first = table.first[balancer.name]
        members = balancer.members
        self.static = tuple(range(first, first + len(members)))
        self.slots = table.slots[balancer.name]            # rows that DNS fills
        self.method = getattr(self, "_" + balancer.method)
        self.static_routes = {m.route: first + i for i, m in enumerate(members) if m.route}
        self.static_ident = {first + i: _ident(m.route or m.url) for i, m in enumerate(members)}
        self.insert = balancer.sticky is not None and balancer.sticky_insert
        self.cookie_re = self.param_re = self.hash_cookie_re = None
        if balancer.sticky:
            name = re.escape(balancer.sticky.encode())
            self.cookie_re = _cookie_re(balancer.sticky)
            self.param_re = re.compile(rb"[?&;]" + name + rb"=([^&;#]*)")
        self.nofailover = balancer.nofailover
        self.failonstatus = frozenset(balancer.failonstatus)
        self.retry = balancer.retry
        self.max = {first + i: m.max_connections for i, m in enumerate(members) if m.max_connections}
        self.hash_source = balancer.hash_key.source
        self.hash_name = (balancer.hash_key.name or "").lower().encode()
        if self.hash_source == "cookie":
            self.hash_cookie_re = _cookie_re(balancer.hash_key.name)
        self.refresh()

    def refresh(self) -> None:
        """The rows DNS fills changed hands: who is in, and their routes and hash identities."""
        table = self.table
        held = []
        self.routes = dict(self.static_routes)
        self.ident = dict(self.static_ident)
        for i in self.slots:
            # The master writes the table while we read it: a row emptied since `held` said
            # otherwise has no route (its membership change brings us back here).
            route = table.route(i) if table.held(i) else None
            if route is not None:
                held.append(i)
                self.routes[route] = i
                self.ident[i] = _ident(route)
        self.indexes = self.static + tuple(held)
        sticky = self.balancer.sticky
        self.cookies = {i: f"Set-Cookie: {sticky}={route}; Path=/; HttpOnly\r\n".encode()
                        for route, i in self.routes.items()} if self.insert else {}

    # -- who may take it ------------------------------------------------------------------------
    def pick(self, head, client_ip: bytes, tried) -> tuple[int, bytes | None]:
        """(member index, Set-Cookie line to add or None); index -1: nobody (503)."""
        table = self.table
        now = time.monotonic()
        if self.cookie_re is not None:
            stuck = self._sticky_member(head)
            if stuck is not None:
                if stuck not in tried and self._usable_by_session(stuck, now):
                    return stuck, None
                if self.nofailover:
                    return -1, None
        status, health, error_until = table.status, table.health, table.error_until
        candidates, standby, in_error, departed = [], [], [], []
        for i in self.indexes:
            current = status[i]
            if current > STANDBY or health[i] != UP or (tried and i in tried):
                if current == DRAIN and table.leaving[i] and health[i] == UP and not (tried and i in tried):
                    departed.append(i)          # left DNS, within `hold` (mpm.slots.settle)
                continue
            if error_until[i] > now:
                in_error.append(i)
            elif current == ENABLED:
                candidates.append(i)
            else:
                standby.append(i)
        if self.max:
            candidates, standby, in_error, departed = ([i for i in group if not self._full(i)]
                                                       for group in (candidates, standby, in_error, departed))
        # hot-standby only when no enabled member is usable; then forcerecovery: members
        # that only the error state holds back; last, members that left DNS and still work
        # (their successors not up yet), rather than nobody at all
        candidates = candidates or standby or in_error or [i for i in departed if error_until[i] <= now]
        if not candidates:
            return -1, None
        chosen = candidates[0] if len(candidates) == 1 else self.method(candidates, head, client_ip)
        return chosen, self.cookies.get(chosen) if self.insert else None

    def _usable_by_session(self, index: int, now: float) -> bool:
        """A sticky session may stay on a member that drains (an operator's drain, or one that
        left DNS within `hold`), not on one disabled, gone, down, in error or full."""
        table = self.table
        return (table.status[index] <= DRAIN and table.health[index] == UP and table.error_until[index] <= now
                and not self._full(index))

    def _full(self, index: int) -> bool:
        limit = self.max.get(index)
        return bool(limit) and self.table.busy_of(index) >= limit

    def _sticky_member(self, head) -> int | None:
        """The member a sticky URL parameter or cookie names: `NAME=anything.ROUTE` (Apache,
        Tomcat's jsessionid) or, with `insert`, `NAME=ROUTE` as we set it.  The URL's first,
        as Apache's find_session_route: Tomcat rewrites URLs when the cookie is not to be trusted."""
        m = self.param_re.search(head.target)
        values = [m.group(1)] if m else []
        values += [m.group(1) for value in head.values(b"cookie") for m in self.cookie_re.finditer(value)]
        for raw in values:
            value = raw.strip(b'" ').decode("latin-1")
            if self.insert and value in self.routes:
                return self.routes[value]
            dot = value.find(".")
            while dot >= 0:
                index = self.routes.get(value[dot + 1:])
                if index is not None:
                    return index
                dot = value.find(".", dot + 1)
        return None

    # -- methods (lbmethod=) ------------------------------------------------------------------------
    def _byrequests(self, candidates, head, client_ip) -> int:
        """Smooth weighted round-robin (nginx's, which is Apache's byrequests): 3:1 gives A A B A."""
        table = self.table
        weight, lbstatus = table.weight, table.lbstatus
        total = best_ls = 0
        best = -1
        table.lock()
        try:
            for i in candidates:
                ls = lbstatus[i] = lbstatus[i] + weight[i]
                total += weight[i]
                if best < 0 or ls > best_ls:
                    best, best_ls = i, ls
            lbstatus[best] = best_ls - total
        finally:
            table.unlock()
        return best

    def _bybusyness(self, candidates, head, client_ip) -> int:
        """Fewest open exchanges and tunnels per unit of weight; ties by smooth round-robin."""
        table = self.table
        weights, lbstatus = table.weight, table.lbstatus
        total = best_ls = best_busy = 0
        best, best_weight = -1, 1
        table.lock()
        try:
            for i in candidates:
                weight = weights[i]
                ls = lbstatus[i] = lbstatus[i] + weight
                total += weight
                busy = table.busy_of(i)
                if best < 0 or busy * best_weight < best_busy * weight or \
                        (busy * best_weight == best_busy * weight and ls > best_ls):
                    best, best_ls, best_busy, best_weight = i, ls, busy, weight
            lbstatus[best] = best_ls - total
        finally:
            table.unlock()
        return best

    def _bytraffic(self, candidates, head, client_ip) -> int:
        """Fewest bytes moved per unit of weight (Apache's bytraffic)."""
        table = self.table
        cells, used, moved, past, weights = table.cells, table.cells_used[0], table.bytes, table.bytes_past, table.weight
        best, best_traffic, best_weight = -1, 0, 1
        for i in candidates:
            weight = weights[i]
            traffic = past[i] + sum(moved[i * cells:i * cells + used])
            if best < 0 or traffic * best_weight < best_traffic * weight:
                best, best_traffic, best_weight = i, traffic, weight
        return best

    def _hash(self, candidates, head, client_ip) -> int:
        """Weighted rendezvous hashing: each member scores the key, the best score wins.  Only
        the keys a new member wins move to it (about 1/N), and a member that is down or gone
        loses just its own keys; every instance with the same members computes the same answer."""
        key = None
        if self.hash_source == "header":
            key = head.get(self.hash_name)
        elif self.hash_source == "cookie":
            for value in head.values(b"cookie"):
                m = self.hash_cookie_re.search(value)
                if m:
                    key = m.group(1)
                    break
        if not key:
            key = client_ip       # no such header or cookie: the client address
        weights = self.table.weight
        best, best_score = -1, 0.0
        for i in candidates:
            hasher = self.ident[i].copy()
            hasher.update(key)
            h = int.from_bytes(hasher.digest(), "little")
            score = -weights[i] / math.log((h + 0.5) / 18446744073709551616.0)
            if best < 0 or score > best_score:
                best, best_score = i, score
        return best


def _cookie_re(name: str) -> re.Pattern:
    return re.compile(rb"(?:^|;)\s*" + re.escape(name.encode()) + rb"=([^;]*)")


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
        self.pickers = {name: _Picker(table, balancer) for name, balancer in table.balancers.items()}
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
