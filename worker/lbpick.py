"""Choosing a balancer member, as one worker does (mod_lbmethod_*, mod_proxy_balancer's
sticky sessions): `Picker`, one per balancer, over the shared member table.

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

import hashlib
import math
import re
import time

from shm.members import DRAIN, ENABLED, STANDBY, UP, MemberTable


def _ident(name: str):
    """A member's identity for hashing: its route (or URL), so instances with the same file agree."""
    return hashlib.blake2b(name.encode() + b"\0", digest_size=8)


class Picker:
    """One balancer, as a worker chooses among its members."""

    __slots__ = ("table", "balancer", "name", "static", "slots", "indexes", "method", "routes", "cookies",
                 "insert", "cookie_re", "param_re", "nofailover", "failonstatus", "retry", "ident", "hash_source",
                 "hash_name", "hash_cookie_re", "max", "static_routes", "static_ident", "route_lengths")

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
            # The URL parameter has a name of its own in Tomcat's JSESSIONID|jsessionid pair.  A
            # path parameter ends at the query: `/a;jsessionid=ID.b2?q=1` is route b2 (httpd's
            # get_path_param ends it at `?` too; it was read as `b2?q=1`, no route, round robin).
            name = re.escape((balancer.sticky_param or balancer.sticky).encode())
            self.cookie_re = _cookie_re(balancer.sticky)
            self.param_re = re.compile(rb"[?&;]" + name + rb"=([^&;#?]*)")
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
        self.route_lengths = sorted({len(route) for route in self.routes}, reverse=True)
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
            # The longest known route that ends the value after a dot (what trying every dot
            # from the left finds), asked once per length a route has: asked once per dot, a
            # cookie of 8,000 dots cost a slice and a hash each, O(n²) (review 2026-12-03-balancers #2).
            size = len(value)
            for length in self.route_lengths:
                if length < size and value[size - length - 1] == ".":
                    index = self.routes.get(value[size - length:])
                    if index is not None:
                        return index
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
