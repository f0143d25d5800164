"""Per-client limits, a worker's side (nginx's limit_conn and limit_req, counted server-wide).

Who the client is: the peer address, or the address a PROXY protocol header carried
(worker.proxyproto), or, when that address is one of `limits.trusted_proxies`, the
X-Forwarded-For hop of each request that the nearest untrusted party wrote: the hops are read
right to left past trusted proxies (mod_remoteip's rule, nginx's real_ip_recursive on), since
anything left of the first untrusted hop was written by the client itself.

What is counted, in the shared client table (shm.clients), and when:

    connections   at accept (after the PROXY header, before TLS): over the limit, the
                  connection is closed before anything is read; it counts until it closes,
                  a tunnel included.  Connections from a trusted proxy are not counted (they
                  carry many clients).
    requests      a token bucket (GCRA) checked when a request is routed: 429 + Retry-After
    tunnels       checked when an upgrade is routed, counted from then (so two upgrades in
                  flight cannot both slip under the limit) until the tunnel closes or the
                  upgrade is answered without one: 503
    route connections   a route's own `connections`: its requests and tunnels in progress (as
                  limit_conn in an nginx location): 503

A route with `per_client` has its own entry per client (its own scope), so its counts and
bucket are apart from the global ones; what it leaves out is checked globally.  What a
request holds (a tunnel count, a route count) is a list of `Hold`s, released when the
exchange ends or, for a tunnel, when the tunnel closes; a hand-over to another worker
releases them here and takes them again there (`export` / `adopt`).
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import zlib

from shm.clients import CONNS, TUNNELS

LOG_EVERY = 1.0          # seconds: at most one refusal line per client this often
CACHE_MAX = 8192         # cached address conversions and row lookups per worker
MAX_HOPS = 8             # X-Forwarded-For hops read, from the right (forwarded_client)
UNTRACKED_LOG_EVERY = 10.0   # seconds: at most one "client table full" line per worker this often
CLAIM_AGAIN = 1.0        # seconds between two claims of a counter cell by a worker that has none
_V4_PREFIX = b"\0" * 10 + b"\xff\xff"
_COLUMN = {CONNS: 0, TUNNELS: 1}


def scope_of(route_name: str) -> int:
    """A route's scope: derived from its name, so a reload keeps the counts of an unchanged route."""
    return zlib.crc32(route_name.encode()) | 1 << 32


class ClientLimits:
    def __init__(self, worker, table, limits):
        self.worker = worker
        self.loop = worker.loop
        self.table = table              # None with trusted_proxies alone: nothing is counted
        self.cells = table.cells if table is not None else 0
        self.cell = table.claim(os.getpid()) if table is not None else -1
        self.enabled = self.cell >= 0       # counting here (a table, and a cell of it)
        if table is not None and self.cell < 0:
            worker.log_error("error", f"client table: no free counter cell; this worker enforces no per-client "
                                      f"limits until one is free (asked again every {CLAIM_AGAIN:g}s)")
            self.loop.call_later(CLAIM_AGAIN, self._claim_again)
        per = limits.per_client
        self.connections = per.connections if per else 0
        self.tunnels = per.tunnels if per else 0
        self.rate = per.requests if per else None
        if self.rate is not None:     # the global bucket's constants, for the inlined check in `admit`
            self.interval = 1.0 / self.rate.rate
            self.tau = self.interval * self.rate.burst + 1e-9
        self.trusted_networks = limits.trusted_proxies
        self.keys: dict = {}        # address bytes -> (hi, lo)
        self.rows: dict = {}        # (address bytes, scope) -> (row, epoch)
        self.trusted: dict = {}     # address bytes -> whether it is a trusted proxy
        self.forwarded: dict = {}   # X-Forwarded-For hop -> canonical address bytes (or None)
        self.untracked_since, self.untracked_logged = 0, -UNTRACKED_LOG_EVERY

    def _claim_again(self) -> None:
        """Every cell was taken when this worker started (by older generations' workers still
        finishing long responses or TLS tunnels; the master frees a cell when its worker is
        gone): ask again, so the limits fail open for a while, not for this worker's life
        (review 2026-12-03-hostile #3).  What it accepted meanwhile is not counted."""
        cell = self.table.claim(os.getpid())
        if cell < 0:
            self.loop.call_later(CLAIM_AGAIN, self._claim_again)
            return
        self.cell, self.enabled = cell, True
        self.worker.log_error("warning", "client table: got a counter cell; per-client limits enforced from now on "
                                         "(connections accepted before are not counted)")

    # == who the client is ==============================================================
    def is_trusted(self, ip: bytes) -> bool:
        found = self.trusted.get(ip)
        if found is None:
            if len(self.trusted) > CACHE_MAX:
                self.trusted.clear()
            try:
                address = ipaddress.ip_address(ip.decode("ascii"))
            except ValueError:
                address = None
            if address is not None and address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            found = self.trusted[ip] = address is not None and any(address in net for net in self.trusted_networks)
        return found

    def forwarded_client(self, head, peer: bytes) -> bytes:
        """Who sent a request that reached us through a trusted proxy: X-Forwarded-For read
        right to left past the hops that are trusted proxies themselves (two tiers, a CDN and
        an internal balancer, write "client, balancer"); the first hop that is not trusted is
        the client.  As mod_remoteip and nginx's real_ip_recursive do: all hops trusted, the
        leftmost; a hop that is not an address stops the walk at the hop to its right (the
        peer when it is the last).  At most MAX_HOPS hops are read: the ones to the left of an
        untrusted hop were written by the client itself, and a longer chain of our own
        proxies is not a deployment, so a long header costs no more than a short one."""
        if b"x-forwarded-for" not in head.spans:
            return peer
        hops = head.joined(b"x-forwarded-for").rsplit(b",", MAX_HOPS)
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            address = self._forwarded_hop(hop.strip(b" \t"))
            if address is None:
                break
            client = address
            if not self.is_trusted(address):
                break
        return client

    def _forwarded_hop(self, hop: bytes) -> bytes | None:
        """An X-Forwarded-For hop as canonical address bytes, or None when it is no address."""
        found = self.forwarded.get(hop, False)
        if found is False:
            if len(self.forwarded) > CACHE_MAX:
                self.forwarded.clear()
            try:
                # No IPv6 scope: "fe80::1%<anything>" parses, and would carry the client's
                # bytes (spaces, quotes) into the access log's first field.
                found = None if b"%" in hop else str(ipaddress.ip_address(hop.decode("ascii"))).encode()
            except (ValueError, UnicodeDecodeError):
                found = None
            self.forwarded[hop] = found
        return found

    # == rows ==============================================================================
    def _key(self, ip: bytes) -> tuple[int, int]:
        key = self.keys.get(ip)
        if key is None:
            if len(self.keys) > CACHE_MAX:
                self.keys.clear()
            text = ip.decode("ascii", "replace")
            try:
                packed = socket.inet_pton(socket.AF_INET6, text) if ":" in text else \
                    _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
            except OSError:
                packed = _V4_PREFIX + b"\0\0\0\0"
            key = self.keys[ip] = (int.from_bytes(packed[:8], "big", signed=True),
                                   int.from_bytes(packed[8:], "big", signed=True))
        return key

    def row(self, ip: bytes, scope: int) -> tuple[int, int]:
        """(row, epoch) of the client's entry in `scope`, inserting it; row -1: untracked."""
        table = self.table
        cached = self.rows.get((ip, scope))
        if cached is not None and table.epoch[cached[0]] == cached[1]:
            return cached
        hi, lo = self._key(ip)
        row = table.find(hi, lo, scope)
        if row < 0:
            row, evicted = table.insert(hi, lo, scope, self.loop.now)
            if row < 0:
                table.untracked[self.cell] += 1
                self._untracked()
                return -1, 0
            if evicted:
                table.evicted[self.cell] += 1
        if len(self.rows) > CACHE_MAX:
            self.rows.clear()
        found = self.rows[(ip, scope)] = (row, table.epoch[row])
        return found

    def _untracked(self) -> None:
        """A client left untracked, its limits off (its bucket's entries all have something
        open): said in the error log at most once per UNTRACKED_LOG_EVERY with how many since,
        so that a table too small for its clients, or one filled from many addresses on
        purpose, is seen and not only counted (review 2026-12-03-hostile #5)."""
        self.untracked_since += 1
        now = self.loop.now
        if now - self.untracked_logged >= UNTRACKED_LOG_EVERY:
            self.worker.log_error("warning", f"client table full: {self.untracked_since} clients untracked since the "
                                             f"last such line, whose per-client limits do not apply (every entry of "
                                             f"their buckets has connections open; limits.per_client.table is "
                                             f"{self.table.entries})")
            self.untracked_logged, self.untracked_since = now, 0

    def _count_in(self, ip: bytes, scope: int, column: str, limit: int):
        """Count ourselves in the entry's column; (hold, total after) or (None, 0) when untracked.
        Counting first and reading the total after means two workers racing at the limit may
        both refuse, never both pass; an epoch that moved meanwhile (the entry was evicted
        and reused between our lookup and our count) sends us round again."""
        table, cells, cell = self.table, self.cells, self.cell
        counts = getattr(table, column)
        for _ in range(3):
            row, epoch = self.row(ip, scope)
            if row < 0:
                return None, 0
            start = row * cells
            counts[start + cell] += 1
            if table.epoch[row] == epoch:
                table.seen[row] = self.loop.now
                total = sum(counts[start:start + table.cells_used[0]]) if limit else 0
                return [row, epoch, _COLUMN[column], scope], total
            counts[start + cell] -= 1
        return None, 0

    def release(self, holds) -> None:
        table, cells, cell = self.table, self.cells, self.cell
        for row, _, column, _ in holds:
            (table.conns if column == 0 else table.tunnels)[row * cells + cell] -= 1
            table.seen[row] = self.loop.now

    # == connections ===========================================================================
    def open_connection(self, ip: bytes):
        """At accept: the connection's hold ([] when not counted), or None: refuse it."""
        if not self.enabled or (self.trusted_networks and self.is_trusted(ip)):
            return []
        hold, total = self._count_in(ip, 0, CONNS, self.connections)
        if hold is None:
            return []
        if self.connections and total > self.connections:
            self.release([hold])
            self.refused(hold[0], "refused_connections", ip, f"over {self.connections} connections")
            return None
        return [hold]

    def count_connection(self, ip: bytes) -> list:
        """A connection handed over by another worker: counted here, never refused."""
        if not self.enabled:
            return []
        hold, _ = self._count_in(ip, 0, CONNS, 0)
        return [hold] if hold is not None else []

    def count_tunnel(self, client: bytes, peer: bytes) -> list:
        """A tunnel handed over uncounted (worker.admission.tunnel_adopted): its connection
        for `peer` (not a trusted proxy's), the tunnel for `client`; never refused."""
        holds = []
        for ip, column in ((peer, CONNS), (client, TUNNELS)):
            if column is CONNS and self.trusted_networks and self.is_trusted(ip):
                continue
            hold, _ = self._count_in(ip, 0, column, 0)
            if hold is not None:
                holds.append(hold)
        return holds

    # == requests ===============================================================================
    def admit(self, ex, route, upgrade) -> tuple | None:
        """Called when a request is routed.  None: it may go on (what it holds is in
        `ex.holds`); else (status, reason for the log, extra response header lines)."""
        if not self.enabled:
            return None
        ip = ex.client_ip
        own = route.per_client if route is not None else None     # no route: a 404, counted all the same
        if own is None and upgrade is None:           # the usual request: the global bucket alone
            if self.rate is None:
                return None
            holds = ex.client.holds
            if not holds or ip is not ex.client.client_ip:
                row = self.row(ip, 0)[0]
                return self._over_rate(row, self.rate, ip) if row >= 0 else None
            # The connection's own entry, pinned by its count (so never evicted, and `seen` is
            # written when it closes): _take inlined, this runs for every request.
            row, tat, now = holds[0][0], self.table.tat, self.loop.now
            due = (tat[row] if tat[row] > now else now) + self.interval
            if due - now > self.tau:
                return self._over_rate(row, self.rate, ip)
            tat[row] = due
            return None
        scope = route.scope if own is not None else 0
        rate = own.requests if own is not None and own.requests else self.rate
        if rate is not None:
            row = self.row(ip, scope if own is not None and own.requests else 0)[0]
            refusal = self._over_rate(row, rate, ip) if row >= 0 else None
            if refusal is not None:
                return refusal
        holds = []
        if own is not None and own.connections:
            refusal = self._hold(ex, holds, ip, scope, CONNS, own.connections, f"route {route.name}: over "
                                 f"{own.connections} requests and tunnels in progress", "refused_connections")
            if refusal:
                return refusal
        if upgrade is not None:
            limit = own.tunnels if own is not None and own.tunnels else self.tunnels
            if limit:
                refusal = self._hold(ex, holds, ip, scope if own is not None and own.tunnels else 0, TUNNELS, limit,
                                     f"over {limit} tunnels", "refused_tunnels")
                if refusal:
                    return refusal
        if holds:
            ex.holds = holds
        return None

    def _over_rate(self, row: int, rate, ip: bytes):
        wait = self._take(row, rate)
        if not wait:
            return None
        self.refused(row, "refused_requests", ip, f"over {rate.rate:g} requests/s (burst {rate.burst})")
        return 429, f"over {rate.rate:g} requests/s", b"Retry-After: %d\r\n" % max(1, math.ceil(wait))

    def _hold(self, ex, holds: list, ip: bytes, scope: int, column: str, limit: int, why: str, kind: str):
        hold, total = self._count_in(ip, scope, column, limit)
        if hold is None:
            return None
        if total > limit:
            self.release([hold, *holds])
            holds.clear()
            self.refused(hold[0], kind, ip, why)
            return 503, why, b""
        holds.append(hold)
        return None

    def _take(self, row: int, rate) -> float:
        """GCRA (a token bucket as one timestamp): 0 when the request may go, else the seconds
        until it could.  Read-modify-written without a lock: see shm.clients."""
        table, now = self.table, self.loop.now
        interval = 1.0 / rate.rate
        tat = table.tat[row]
        if tat < now:
            tat = now
        tat += interval
        over = tat - now - interval * rate.burst
        if over > 1e-9:
            return over
        table.tat[row] = tat
        table.seen[row] = now
        return 0.0

    # == refusals ================================================================================
    def refused(self, row: int, kind: str, ip: bytes, why: str) -> None:
        """Counted always; logged at most once a second per client (whichever worker's turn)."""
        table, now = self.table, self.loop.now
        getattr(table, kind)[self.cell] += 1
        table.refused[row] += 1
        if now - table.logged[row] >= LOG_EVERY:
            count, table.refused[row] = table.refused[row], 0
            table.logged[row] = now
            self.worker.log_error("warning", f"{ip.decode('latin-1')}: per-client limit: {why}; refused "
                                             f"({count} refusal{'s' if count != 1 else ''} of this client since "
                                             f"the last such line)")

    # == tunnels that move between workers ==========================================================
    def export(self, holds) -> dict:
        """What a tunnel's context carries to another worker: the table and the entries."""
        return {"table": self.table.ident[0], "holds": holds}

    def adopt(self, ip: bytes, carried) -> list:
        """A tunnel handed over by another worker: count its holds in our cell."""
        if not self.enabled or not isinstance(carried, dict):
            return []
        table, holds = self.table, []
        for row, epoch, column, scope in carried.get("holds", ()):
            same = carried.get("table") == table.ident[0] and 0 <= row < table.entries and table.epoch[row] == epoch
            if same:
                getattr(table, CONNS if column == 0 else TUNNELS)[row * self.cells + self.cell] += 1
                holds.append([row, epoch, column, scope])
            else:
                hold, _ = self._count_in(ip, scope, CONNS if column == 0 else TUNNELS, 0)
                if hold is not None:
                    holds.append(hold)
        return holds

