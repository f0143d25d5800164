"""Balancer members, decided server-wide (mod_proxy_balancer, mod_lbmethod_*).

Theory of operation
-------------------
Every member of every balancer has one record in a table in shared memory
(`MemberTable`), created by the master before it forks a generation, so every worker
picks from the same picture:

    status        enabled | disabled | drain | hot-standby   (the file, then `mpmctl balancer set`)
    weight        loadfactor                                   (the file, then `mpmctl balancer set`)
    health        up | down: written only by the master's health checks (mpm/health.py)
    error_until   passive detection: a connect failure, or a status listed in `failonstatus`,
                  puts the member in error state until then (retry=)
    lbstatus      the smooth weighted round-robin accumulator (byrequests, and bybusyness ties)

and counters: busy (exchanges and tunnels open on it), requests, bytes, failures.  No
counter is written by two processes: each worker process claims a *cell* (a column of
counters, one per member) when it starts, and a reader sums the cells.  So no update is
lost to a race and `bybusyness` is exact; when a worker dies, the master folds its
cumulative counters into the member record and clears the cell (its connections died with
it).  `lbstatus` is the one value several workers read-modify-write: that happens under
a POSIX record lock on the table's memfd (Apache's balancer mutex; the kernel drops it if
its holder dies).  Times are CLOCK_MONOTONIC, which every process on the host shares.

Who may take a request, in order:
    1. a sticky request's member (the route in its cookie or URL parameter), if it is usable
       or draining; if it is not, the request fails over, or gets 503 under `nofailover`
    2. usable enabled members: health up, not in error state, under max_connections
    3. usable hot-standby members, only when step 2 found none
    4. members only in error state (Apache's forcerecovery), never one a health check
       holds down, nor one this request already failed on
and the method chooses among the members of the first step that has any.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import re
import time

STATUSES = ("enabled", "disabled", "drain", "hot-standby")
ENABLED, DISABLED, DRAIN, STANDBY = range(4)
UP, DOWN = 0, 1

# Layout, in 8-byte slots: a header, one record per member, one pid per cell, then the
# counters, member-major so that summing one counter over the cells is one slice.
_HEADER = 8                 # magic, members, cells, cells in use (high-water mark)
_MAGIC = 0x4D504D42
_RECORD = 16
(_STATUS, _WEIGHT, _HEALTH, _ERROR_UNTIL, _LBSTATUS, _HC_PASSES, _HC_FAILS, _CHECKED,
 _REQUESTS, _BYTES, _FAILURES, _ERROR_AT, _HC_LAST) = range(13)    # float slots: _ERROR_UNTIL, _CHECKED, _ERROR_AT
BUSY, REQUESTS, BYTES, FAILURES = range(4)
_COUNTERS = 4
_FOLDED = ((REQUESTS, _REQUESTS), (BYTES, _BYTES), (FAILURES, _FAILURES))


class MemberInfo:
    """What does not change while a table lives: where a member is, and who it is."""

    __slots__ = ("index", "balancer", "member", "url", "route", "key")

    def __init__(self, index: int, balancer, member):
        self.index = index
        self.balancer = balancer
        self.member = member
        self.url = member.url
        self.route = member.route
        self.key = (balancer.name, member.url)     # identity across reloads and hand-overs


class MemberTable:
    """The shared table.  The master creates it (before fork) and reads it for `mpmctl`;
    workers claim a cell and pick from it; health checks write `health`."""

    def __init__(self, balancers, cells: int = 1):
        self.balancers = balancers
        self.members: list[MemberInfo] = []
        self.first: dict[str, int] = {}
        for balancer in balancers.values():
            self.first[balancer.name] = len(self.members)
            for member in balancer.members:
                self.members.append(MemberInfo(len(self.members), balancer, member))
        self.by_key = {info.key: info.index for info in self.members}
        n = len(self.members)
        self.cells = cells
        self.pid_base = _HEADER + n * _RECORD
        self.count_base = self.pid_base + cells
        size = -(-8 * (self.count_base + n * _COUNTERS * cells) // mmap.PAGESIZE) * mmap.PAGESIZE
        self.fd = os.memfd_create("mpm-balancers", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.q = memoryview(self.map).cast("q")      # the same bytes, read as integers ...
        self.d = memoryview(self.map).cast("d")      # ... or as floats
        self.q[0], self.q[1], self.q[2] = _MAGIC, n, cells
        for info in self.members:
            rec = self.record(info.index)
            self.q[rec + _STATUS] = STATUSES.index(info.member.status)
            self.q[rec + _WEIGHT] = info.member.weight

    def record(self, index: int) -> int:
        return _HEADER + index * _RECORD

    def counter(self, index: int, field: int, cell: int) -> int:
        return self.count_base + (index * _COUNTERS + field) * self.cells + cell

    # -- the lock (byrequests / bybusyness accumulators, cell claims) ------------------------
    def lock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    # -- cells -----------------------------------------------------------------------------
    def claim(self, pid: int) -> int:
        """A cell for worker `pid`, or -1 when every cell is taken."""
        q = self.q
        self.lock()
        try:
            for cell in range(self.cells):
                if q[self.pid_base + cell] == 0:
                    q[self.pid_base + cell] = pid
                    q[3] = max(q[3], cell + 1)
                    return cell
            return -1
        finally:
            self.unlock()

    def release_dead(self, alive) -> int:
        """Master: fold the cells of processes not in `alive` into the records and free
        them.  Returns how many cells are still held."""
        q, held = self.q, 0
        for cell in range(q[3]):
            pid = q[self.pid_base + cell]
            if not pid:
                continue
            if pid in alive:
                held += 1
                continue
            self.lock()
            try:
                for info in self.members:
                    rec = self.record(info.index)
                    for field, folded in _FOLDED:
                        q[rec + folded] += q[self.counter(info.index, field, cell)]
                    for field in range(_COUNTERS):
                        q[self.counter(info.index, field, cell)] = 0
                q[self.pid_base + cell] = 0
            finally:
                self.unlock()
        return held

    # -- reading -------------------------------------------------------------------------------
    def total(self, index: int, field: int) -> int:
        start = self.count_base + (index * _COUNTERS + field) * self.cells
        value = sum(self.q[start:start + self.q[3]])
        for counted, folded in _FOLDED:
            if counted == field:
                value += self.q[self.record(index) + folded]
        return value

    def busy(self, index: int) -> int:
        start = self.count_base + index * _COUNTERS * self.cells
        return sum(self.q[start:start + self.q[3]])

    def state(self, index: int, now: float | None = None) -> dict:
        """One member as `mpmctl balancer` shows it."""
        now = time.monotonic() if now is None else now
        info = self.members[index]
        q, d, rec = self.q, self.d, self.record(index)
        error = max(d[rec + _ERROR_UNTIL] - now, 0.0)
        health = "down" if q[rec + _HEALTH] == DOWN else "up"
        status = STATUSES[q[rec + _STATUS]]
        if status == "disabled":
            state = "disabled"
        elif health == "down":
            state = "down"
        elif error > 0:
            state = "error"
        else:
            state = "ok"
        checked = d[rec + _CHECKED]
        return {"url": info.url, "route": info.route, "status": status, "weight": q[rec + _WEIGHT],
                "state": state, "health": health, "error_for": round(error, 1),
                "busy": self.busy(index), "requests": self.total(index, REQUESTS),
                "bytes": self.total(index, BYTES), "failures": self.total(index, FAILURES),
                "max_connections": info.member.max_connections,
                "check": {"last": ("never", "pass", "fail")[q[rec + _HC_LAST]],
                          "age": round(time.time() - checked, 1) if checked else None,
                          "passes": q[rec + _HC_PASSES], "fails": q[rec + _HC_FAILS]}}

    # -- the master's writes ---------------------------------------------------------------------
    def set_status(self, index: int, status: str) -> None:
        self.q[self.record(index) + _STATUS] = STATUSES.index(status)

    def set_weight(self, index: int, weight: int) -> None:
        self.q[self.record(index) + _WEIGHT] = weight

    def clear_error(self, index: int) -> None:
        self.d[self.record(index) + _ERROR_UNTIL] = 0.0

    def in_error(self, index: int, now: float) -> bool:
        return self.d[self.record(index) + _ERROR_UNTIL] > now

    def error_at(self, index: int) -> float:
        return self.d[self.record(index) + _ERROR_AT]

    def health(self, index: int) -> int:
        return self.q[self.record(index) + _HEALTH]

    def record_check(self, index: int, ok: bool, passes: int, fails: int) -> str | None:
        """A health check's result; returns "down" or "up" when it changes the member's health."""
        q, rec = self.q, self.record(index)
        if ok:
            q[rec + _HC_PASSES] += 1
            q[rec + _HC_FAILS] = 0
        else:
            q[rec + _HC_FAILS] += 1
            q[rec + _HC_PASSES] = 0
        q[rec + _HC_LAST] = 1 if ok else 2
        self.d[rec + _CHECKED] = time.time()
        if q[rec + _HEALTH] == UP and not ok and q[rec + _HC_FAILS] >= fails:
            q[rec + _HEALTH] = DOWN
            return "down"
        if q[rec + _HEALTH] == DOWN and ok and q[rec + _HC_PASSES] >= passes:
            q[rec + _HEALTH] = UP
            self.clear_error(index)
            return "up"
        return None

    def carry_from(self, old: MemberTable) -> None:
        """After a reload: what is known of a member's health stays true (by balancer and URL);
        statuses and weights come from the file again, counters start over."""
        for info in self.members:
            index = old.by_key.get(info.key)
            if index is None:
                continue
            src, dst = old.record(index), self.record(info.index)
            for slot in (_HEALTH, _ERROR_UNTIL, _HC_PASSES, _HC_FAILS, _CHECKED, _ERROR_AT, _HC_LAST):
                self.q[dst + slot] = old.q[src + slot]

    def close(self) -> None:
        self.q.release()
        self.d.release()
        self.map.close()
        os.close(self.fd)


class _Picker:
    """One balancer, as a worker chooses among its members."""

    __slots__ = ("table", "balancer", "name", "indexes", "method", "routes", "cookies", "insert",
                 "cookie_re", "param_re", "nofailover", "failonstatus", "retry", "ident", "hash_source",
                 "hash_name", "hash_cookie_re", "max")

    def __init__(self, table: MemberTable, balancer):
        self.table = table
        self.balancer = balancer
        self.name = balancer.name
        first = table.first[balancer.name]
        members = balancer.members
        self.indexes = tuple(range(first, first + len(members)))
        self.method = getattr(self, "_" + balancer.method)
        self.routes = {m.route: first + i for i, m in enumerate(members) if m.route}
        self.insert = balancer.sticky is not None and balancer.sticky_insert
        self.cookies = {first + i: f"Set-Cookie: {balancer.sticky}={m.route}; Path=/; HttpOnly\r\n".encode()
                        for i, m in enumerate(members) if m.route} if self.insert else {}
        self.cookie_re = self.param_re = self.hash_cookie_re = None
        if balancer.sticky:
            name = re.escape(balancer.sticky.encode())
            self.cookie_re = _cookie_re(balancer.sticky)
            self.param_re = re.compile(rb"[?&;]" + name + rb"=([^&;#]*)")
        self.nofailover = balancer.nofailover
        self.failonstatus = frozenset(balancer.failonstatus)
        self.retry = balancer.retry
        self.max = {first + i: m.max_connections for i, m in enumerate(members) if m.max_connections}
        # hash: a member is known by its route (or URL), so instances with the same file agree
        self.ident = {first + i: hashlib.blake2b((m.route or m.url).encode() + b"\0", digest_size=8)
                      for i, m in enumerate(members)}
        self.hash_source = balancer.hash_key.source
        self.hash_name = (balancer.hash_key.name or "").lower().encode()
        if self.hash_source == "cookie":
            self.hash_cookie_re = _cookie_re(balancer.hash_key.name)

    # -- who may take it ------------------------------------------------------------------------
    def pick(self, head, client_ip: bytes, tried) -> tuple[int, bytes | None]:
        """(member index, Set-Cookie line to add or None); index -1: nobody (503)."""
        table = self.table
        now = time.monotonic()
        if self.cookie_re is not None:
            stuck = self._sticky_member(head)
            if stuck is not None:
                if stuck not in tried and self._usable(stuck, now, sticky=True):
                    return stuck, None
                if self.nofailover:
                    return -1, None
        q, d = table.q, table.d
        candidates, standby, in_error = [], [], []
        for i in self.indexes:
            rec = _HEADER + i * _RECORD
            status = q[rec + _STATUS]
            if q[rec + _HEALTH] != UP or status == DISABLED or status == DRAIN or (tried and i in tried):
                continue
            if d[rec + _ERROR_UNTIL] > now:
                in_error.append(i)
            elif status == ENABLED:
                candidates.append(i)
            else:
                standby.append(i)
        if self.max:
            candidates, standby, in_error = ([i for i in group if not self._full(i)]
                                             for group in (candidates, standby, in_error))
        # hot-standby only when no enabled member is usable; then forcerecovery: members
        # that only the error state holds back, rather than nobody at all
        candidates = candidates or standby or in_error
        if not candidates:
            return -1, None
        chosen = candidates[0] if len(candidates) == 1 else self.method(candidates, head, client_ip)
        return chosen, self.cookies.get(chosen) if self.insert else None

    def _usable(self, index: int, now: float, status: int = ENABLED, sticky: bool = False) -> bool:
        q, rec = self.table.q, _HEADER + index * _RECORD
        current = q[rec + _STATUS]
        if sticky:
            if current == DISABLED:
                return False
        elif current != status:
            return False
        return (q[rec + _HEALTH] == UP and self.table.d[rec + _ERROR_UNTIL] <= now
                and not self._full(index))

    def _full(self, index: int) -> bool:
        limit = self.max.get(index)
        return bool(limit) and self.table.busy(index) >= limit

    def _sticky_member(self, head) -> int | None:
        """The member a sticky cookie or URL parameter names: `NAME=anything.ROUTE`
        (Apache, Tomcat's jsessionid) or, with `insert`, `NAME=ROUTE` as we set it."""
        values = [m.group(1) for value in head.values(b"cookie") for m in self.cookie_re.finditer(value)]
        m = self.param_re.search(head.target)
        if m:
            values.append(m.group(1))
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
        table, q = self.table, self.table.q
        total = best_ls = 0
        best = -1
        table.lock()
        try:
            for i in candidates:
                rec = _HEADER + i * _RECORD
                weight = q[rec + _WEIGHT]
                ls = q[rec + _LBSTATUS] = q[rec + _LBSTATUS] + weight
                total += weight
                if best < 0 or ls > best_ls:
                    best, best_ls = i, ls
            q[_HEADER + best * _RECORD + _LBSTATUS] = best_ls - total
        finally:
            table.unlock()
        return best

    def _bybusyness(self, candidates, head, client_ip) -> int:
        """Fewest open exchanges and tunnels per unit of weight; ties by smooth round-robin."""
        table, q = self.table, self.table.q
        total = best_ls = best_busy = 0
        best, best_weight = -1, 1
        table.lock()
        try:
            for i in candidates:
                rec = _HEADER + i * _RECORD
                weight = q[rec + _WEIGHT]
                ls = q[rec + _LBSTATUS] = q[rec + _LBSTATUS] + weight
                total += weight
                busy = table.busy(i)
                if best < 0 or busy * best_weight < best_busy * weight or \
                        (busy * best_weight == best_busy * weight and ls > best_ls):
                    best, best_ls, best_busy, best_weight = i, ls, busy, weight
            q[_HEADER + best * _RECORD + _LBSTATUS] = best_ls - total
        finally:
            table.unlock()
        return best

    def _bytraffic(self, candidates, head, client_ip) -> int:
        """Fewest bytes moved per unit of weight (Apache's bytraffic)."""
        table, q = self.table, self.table.q
        cells, used, base = table.cells, q[3], table.count_base + BYTES * table.cells
        best, best_traffic, best_weight = -1, 0, 1
        for i in candidates:
            rec = _HEADER + i * _RECORD
            weight = q[rec + _WEIGHT]
            start = base + i * _COUNTERS * cells
            traffic = q[rec + _BYTES] + sum(q[start:start + used])
            if best < 0 or traffic * best_weight < best_traffic * weight:
                best, best_traffic, best_weight = i, traffic, weight
        return best

    def _hash(self, candidates, head, client_ip) -> int:
        """Weighted rendezvous hashing: each member scores the key, the best score wins.  Only
        the keys a new member wins move to it (about 1/N), and a member that is down loses
        just its own keys; every instance with the same members computes the same answer."""
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
        q = self.table.q
        best, best_score = -1, 0.0
        for i in candidates:
            hasher = self.ident[i].copy()
            hasher.update(key)
            h = int.from_bytes(hasher.digest(), "little")
            score = -q[_HEADER + i * _RECORD + _WEIGHT] / math.log((h + 0.5) / 18446744073709551616.0)
            if best < 0 or score > best_score:
                best, best_score = i, score
        return best


def _cookie_re(name: str) -> re.Pattern:
    return re.compile(rb"(?:^|;)\s*" + re.escape(name.encode()) + rb"=([^;]*)")


class Balancers:
    """A worker's side: choose members, keep its own cell of counters, report failures."""

    def __init__(self, balancers, table: MemberTable | None, log_error, pid: int, origins=None):
        self.table = table if table is not None else MemberTable(balancers)
        self.log_error = log_error
        self.cell = self.table.claim(pid)
        if self.cell < 0:
            log_error("error", "balancer table: no free counter cell; this worker's connections are not counted")
        self.pickers = {name: _Picker(self.table, balancer) for name, balancer in self.table.balancers.items()}
        self.by_index = [self.pickers[info.balancer.name] for info in self.table.members]
        # What `pick` returns for each member: the worker's precomputed Origin, or the backend itself.
        origins = origins if origins is not None else (lambda backend: backend)
        self.backends = [origins(info.member.backend) for info in self.table.members]
        cell, table = max(self.cell, 0), self.table
        self.busy_at = [table.counter(i, BUSY, cell) for i in range(len(table.members))]
        if self.cell < 0:    # counts go to a scratch copy nobody reads
            self.q = memoryview(bytearray(len(table.map))).cast("q")
        else:
            self.q = table.q
        self.stride = table.cells      # from one counter of a member to the next

    def pick(self, name: str, head, client_ip: bytes, tried=()) -> tuple:
        """(backend, member index, Set-Cookie line or None); (None, None, None) when nobody can
        take it.  The member counts the request as busy until `end`."""
        index, cookie = self.pickers[name].pick(head, client_ip, tried)
        if index < 0:
            return None, None, None
        at = self.busy_at[index]
        self.q[at] += 1
        self.q[at + self.stride] += 1     # REQUESTS follows BUSY
        return self.backends[index], index, cookie

    def end(self, index: int, nbytes: int) -> None:
        at = self.busy_at[index]
        self.q[at] -= 1
        self.q[at + 2 * self.stride] += nbytes

    def failed(self, index: int, why: str, connect: bool) -> None:
        """An attempt on the member failed; a connect failure puts it in error state (retry=)."""
        self.q[self.busy_at[index] + 3 * self.stride] += 1
        if connect:
            self._error(index, why)

    def response(self, index: int, status: int) -> None:
        """failonstatus=: the response is relayed as it is, and the member goes into error state."""
        if status in self.by_index[index].failonstatus:
            self.q[self.busy_at[index] + 3 * self.stride] += 1
            self._error(index, f"status {status} is in failonstatus")

    def _error(self, index: int, why: str) -> None:
        picker = self.by_index[index]
        table, rec = self.table, _HEADER + index * _RECORD
        now = time.monotonic()
        already = table.d[rec + _ERROR_UNTIL] > now
        table.d[rec + _ERROR_AT] = now
        table.d[rec + _ERROR_UNTIL] = now + picker.retry
        if not already and picker.retry > 0:
            self.log_error("error", f"balancer {picker.name}: member {table.members[index].url} in error state "
                                    f"for {picker.retry:g}s: {why}")

    def key(self, index: int) -> list:
        """How a tunnel's member is named to another worker (hand-over)."""
        return list(self.table.members[index].key)

    def tunnel_closer(self, index: int, on_close):
        """The tunnel's on_close: the member stops counting it, then the worker's own."""
        def closed(tunnel, reason):
            self.end(index, tunnel.bytes_in + tunnel.bytes_out)
            on_close(tunnel, reason)
        return closed

    def adopt(self, context, on_close):
        """A tunnel handed over by another worker: count it here, under the same member."""
        named = context.get("lb") if isinstance(context, dict) else None
        index = self.table.by_key.get(tuple(named)) if isinstance(named, list) else None
        if index is None:
            return on_close
        self.q[self.busy_at[index]] += 1
        return self.tunnel_closer(index, on_close)
