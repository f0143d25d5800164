"""The master's side of the balancers: the shared member table, its health checks, DNS
discovery, and `mpmctl balancer` (Apache's balancer-manager: `mpm.balancerctl`).

The table (shm/members.py) is created before a generation forks and handed to its
workers; a reload makes a new one (members may have changed) that keeps what the old
one knew of each member's health, and the members DNS found when the balancer still asks
the same name, while the old generation finishes on its own table.  Each housekeeping
tick frees the counter cells of workers that are gone, drives the DNS lookups and the
drain of members that left DNS, and runs the health checks.  `mpmctl balancer set` writes
a member's status or weight into the current table, where every worker sees it at its
next pick; the next reload re-reads the file and so undoes it.

A member's counters (requests, bytes, failures) start over in each new table; for
/metrics they are totals that never go backwards: the current table's, plus the tables of
older generations still running, plus `carried`, where a table's counts go when it is
closed (and which `mpmctl upgrade` hands to the next master).

`mpmctl upgrade` hands the next master our current table itself (its memfd, and the layout
that names its rows): our workers go on counting there until they have handed their
tunnels over and exited, and the next master reads it as one more older table meanwhile
(`predecessor`), so no count is lost and none goes backwards.  It starts its own table from
it as a reload does: the members DNS gave with their health and status, and those that left
DNS and drain, with the time they left (CLOCK_MONOTONIC is the host's), so `hold` still cuts
their tunnels, which its workers adopt and count on them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from conf.model import Balancer, Discover, Member
from mpm import balancerctl, slots
from mpm.health import HealthChecker
from mpm.pidfile import pid_alive
from shm.members import MemberTable
from shm.table import LayoutMismatch

if TYPE_CHECKING:
    from mpm.discovery import Discovery

log = logging.getLogger("mpm.master")

COUNTED = ("requests", "bytes", "failures")
CELLS_PER_SLOT = 4        # counter cells per ServerLimit slot: room for recycled and handing-over workers


class BalancerManager:
    def __init__(self, config, selector, inherited: dict | None = None, counts: list | dict | None = None):
        self.selector = selector
        # `mpmctl upgrade`: the table of the master we replace, while its workers count there
        self.predecessor: MemberTable | None = None
        self.predecessor_pid = 0
        if isinstance(counts, dict):            # it handed its table over (export_table)
            self.predecessor = _read_predecessor(counts)
            self.predecessor_pid = int(counts.get("pid") or 0)
            counts = counts.get("older" if self.predecessor is not None else "all")
        # (balancer, url) -> [requests, bytes, failures] of closed tables (and of the master we replace)
        self.carried: dict[tuple, list] = {(b, url): list(c) for b, url, *c in counts or ()}
        self.table: MemberTable | None = None
        self.retired: list[MemberTable] = []     # older generations' tables, while their workers live
        self.counted_elsewhere = False           # some member's busy_elsewhere is not 0
        self.health = HealthChecker(selector)
        self.discoveries: dict[str, Discovery] = {}
        self.inherited = dict(inherited or {})    # members found by the master we replace (upgrade)
        self.pending: MemberTable | None = None  # made by `prepare` for the next generation
        self.configure(config)

    def prepare(self, config) -> None:
        """A reload's validate step: the next generation's member table, made now (a memfd and
        its mapping: EMFILE or ENOMEM refuse the reload instead of failing it after the
        commit).  Raises OSError."""
        self.abandon()
        self.pending = _member_table(config)

    def abandon(self) -> None:
        if self.pending is not None:
            self.pending.close()
        self.pending = None

    def configure(self, config) -> None:
        """A new table for the generation about to fork (start, and every successful reload)."""
        self.config = config
        table = self.pending or _member_table(config)
        self.pending = None
        old = self.table
        if old is not None:
            table.carry_from(old)
            self.retired.append(old)
            for index in range(len(old.rows)):     # its workers count what is theirs, as before
                old.busy_elsewhere[index] = 0
        elif self.predecessor is not None:
            table.carry_from(self.predecessor)
        self.table = table
        self._configure_discovery(config, old)
        self._count_elsewhere()                   # before the new generation's first pick
        self.health.configure(table)

    def _configure_discovery(self, config, old: MemberTable | None) -> None:
        """Keep each balancer's Discovery (and the members it found) while it asks the same name."""
        # Imported where a balancer has `discover:`: dnspython is a third of the master's imports
        # (55 of 320 ms), and most configurations never ask DNS.
        from mpm.discovery import Discovery
        kept = {}
        for name, balancer in config.balancers.items():
            discover = balancer.discover
            if discover is None:
                continue
            discovery = self.discoveries.pop(name, None)
            if discovery is not None and discovery.discover.source == discover.source:
                discovery.reconfigure(discover)
                if old is not None:
                    slots.carry(old, self.table, name)
            else:
                if discovery is not None:
                    discovery.close()
                    if old is not None and (discovery.discover.scheme, discovery.discover.tls) == \
                            (discover.scheme, discover.tls):
                        self._carry_as_departed(name, discovery.discover, discover, old)
                discovery = Discovery(self.selector, name, discover, self._found)
                inherited = self.inherited.pop(name, None)
                if inherited is not None:
                    discovery.adopt(inherited)
                if old is None and self.predecessor is not None:
                    self._carry_from_predecessor(name, discover, inherited or {})
            kept[name] = discovery
            if discovery.found is not None:
                self._place(discovery, discovery.answered or time.time())
        for dropped in self.discoveries.values():
            dropped.close()
        self.discoveries = kept

    def _carry_as_departed(self, name: str, before, discover, old: MemberTable) -> None:
        """A reload changed what balancer `name` asks (its name, type or port): the members
        found so far come along as if they had just left DNS, so they serve until the new
        question is answered, then drain as departed members do (or carry on, if the answer
        names them too).  Else the new generation's balancer is empty until that answer: 936
        of 7,722 requests were 503 across such a reload (review 2026-12-03-dns #2).  Not when
        the scheme or TLS changed (the callers check): the old members would be reached another way."""
        slots.carry(old, self.table, name)
        count = slots.depart(self.table, name)
        if count:
            log.warning("balancer %s: discover now asks %s (%s) instead of %s (%s): its %d members drain until "
                        "the answer (hold %gs)", name, discover.dns, discover.rtype, before.dns, before.rtype,
                        count, discover.hold)

    def _carry_from_predecessor(self, name: str, discover, exported: dict) -> None:
        """`mpmctl upgrade`: the members the master we replace found for balancer `name`, as a
        reload carries them: as they were when it asked the same, else as departed members
        (1,154 of 2,126 requests were 503 across an upgrade that renamed discover.dns: review
        2026-12-03-leftovers #2).  Its layout names the scheme, its export the TLS settings
        (one that did not export them is not carried from over TLS)."""
        from mpm.discovery import tls_export  # (see _configure_discovery)
        before = self.predecessor.balancers.get(name)
        before = before.discover if before is not None else None
        if before is None:
            return
        if before.source == discover.source:
            slots.carry(self.predecessor, self.table, name)     # its draining members too
        elif before.scheme == discover.scheme and exported.get("tls") == tls_export(discover.tls):
            self._carry_as_departed(name, before, discover, self.predecessor)

    def _found(self, discovery: Discovery) -> None:
        """A good DNS answer: the balancer's rows follow it."""
        if self._place(discovery, discovery.answered):
            self.health.refresh()

    def _place(self, discovery: Discovery, seen: float) -> bool:
        name = discovery.name
        health = self.table.balancers[name].health
        changed, waiting = slots.place(self.table, name, discovery.found, health is not None, seen)
        if waiting and not discovery.waiting:
            log.warning("balancer %s: %d members found in DNS wait for a row: every one of the %d is held, "
                        "some by members that left DNS and still drain (raise discover.slots)",
                        name, waiting, discovery.discover.slots)
        discovery.waiting = waiting
        return changed

    def tick(self, alive, checks: bool = True) -> None:
        """Housekeeping: free the cells of dead workers, drop tables nobody uses, ask DNS and
        settle departed members, run checks."""
        self.table.release_dead(alive)
        if self.predecessor is not None and not pid_alive(self.predecessor_pid):
            self._carry(self.predecessor)        # its workers are gone with it: its counts are final
            self.predecessor.close()
            self.predecessor = None
        for table in list(self.retired):
            if not table.release_dead(alive):
                self.retired.remove(table)
                self._carry(table)
                table.close()
        self._count_elsewhere()
        now = time.monotonic()
        for discovery in self.discoveries.values():
            discovery.tick(now)
            if slots.settle(self.table, discovery.name, self._busy, discovery.waiting > 0):
                if discovery.waiting:            # a row came free: whoever waits for one takes it now
                    self._place(discovery, discovery.answered)
                self.health.refresh()
        if checks:
            self.health.tick()

    def _busy(self, index: int) -> int:
        """What is open on a member in every generation still running (a reload's old workers
        count on the old table until their tunnels are handed over or end), read now."""
        total = self.table.busy_here(index)
        if self.retired or self.predecessor is not None:
            key = self.table.key(index)
            for old in self._older_tables():
                found = old.find(key)
                if found is not None:
                    total += old.busy_here(found)
        return total

    def _count_elsewhere(self) -> None:
        """Every tick: what older generations' workers have open on each member goes into the
        current table's `busy_elsewhere`, which the workers' picks add (`busy_of`): an HTTP/2
        stream or tunnel stays in a reload's old worker, and max_connections and bybusyness
        must count it (HTTP/1.1 tunnels are handed over and counted anew)."""
        table = self.table
        column = table.busy_elsewhere
        open_elsewhere: dict[tuple, int] = {}
        for old in self._older_tables():
            for name in old.balancers:
                for index in old.listed(name):
                    count = old.busy_here(index)
                    if count:
                        key = old.key(index)
                        open_elsewhere[key] = open_elsewhere.get(key, 0) + count
        if not open_elsewhere and not self.counted_elsewhere:
            return
        wanted = {}
        for key, count in open_elsewhere.items():
            index = table.find(key)
            if index is not None:
                wanted[index] = count
        for index in range(len(table.rows)):      # only what changed: a pick reads it meanwhile
            if column[index] != wanted.get(index, 0):
                column[index] = wanted.get(index, 0)
        self.counted_elsewhere = bool(wanted)

    def _older_tables(self) -> list[MemberTable]:
        """Tables whose workers still count: older generations', and the replaced master's."""
        return self.retired if self.predecessor is None else [self.predecessor, *self.retired]

    def export(self) -> dict:
        """For the next master (`mpmctl upgrade`): what DNS gave, so it starts from there."""
        return {name: discovery.export() for name, discovery in self.discoveries.items()}

    # == counters that never go backwards (/metrics) =============================================
    def member_metrics(self):
        """((balancer, url), what `mpmctl balancer` shows) for every member listed now, with
        `busy` over every generation and the counters as running totals."""
        table, now = self.table, time.monotonic()
        for name in table.balancers:
            for index in table.listed(name):
                key = table.key(index)
                state = table.state(index, now)
                state["busy"] = self._busy(index)
                older = self._older(key)
                for i, counter in enumerate(COUNTED):
                    state[counter] += older[i]
                yield key, state

    def _older(self, key) -> list:
        counts = list(self.carried.get(key, (0, 0, 0)))
        for old in self._older_tables():
            found = old.find(key)
            if found is not None:
                for i, counter in enumerate(COUNTED):
                    counts[i] += old.total(found, counter)
        return counts

    def _carry(self, old: MemberTable) -> None:
        """A table nobody uses any more: what it counted for members still listed is kept."""
        current = {self.table.key(i) for name in self.table.balancers for i in self.table.listed(name)}
        self.carried = {key: counts for key, counts in self.carried.items() if key in current}
        for name in old.balancers:
            for index in old.listed(name):
                key = old.key(index)
                if key in current:
                    counts = self.carried.setdefault(key, [0, 0, 0])
                    for i, counter in enumerate(COUNTED):
                        counts[i] += old.total(index, counter)

    def export_counts(self) -> list:
        """For a next master that cannot read our table (export_table): every member's totals
        now (what our workers count after this is not carried: they are finishing)."""
        return [[*key, state["requests"], state["bytes"], state["failures"]] for key, state in self.member_metrics()]

    def export_table(self) -> dict:
        """For the next master: our table by its memfd (passed with the upgrade's fds) and the
        layout that names its rows; `older`: the totals of every other table, which it adds."""
        table = self.table
        older = []
        for name in table.balancers:
            for index in table.listed(name):
                key = table.key(index)
                older.append([*key, *self._older(key)])
        return {"fd": table.fd, "cells": table.cells, "layout": table.layout(), "pid": os.getpid(),
                "older": older, "all": self.export_counts()}

    def close_in_child(self) -> None:
        self.health.close_in_child()
        for discovery in self.discoveries.values():
            discovery.close_in_child()
        for table in self._older_tables():
            table.close()
        self.retired = []
        self.predecessor = None

    # == mpmctl balancer ========================================================================
    def control(self, request: dict) -> dict:
        if request.get("set"):
            return balancerctl.set_member(self.table, request["set"])
        return {"ok": True, "balancers": balancerctl.listing(self.table, self.discoveries, self._busy)}


def _read_predecessor(exported: dict) -> MemberTable | None:
    """The member table `mpmctl upgrade` handed us (export_table), its rows named as the
    replaced master's configuration named them; None if it cannot be read (its counts then
    come from the snapshot, `all`)."""
    fd = exported.get("fd")
    try:
        balancers = {}
        for name, members, source, count in exported["layout"]:
            discover = Discover(str(source[0]), str(source[1]), int(source[2]), str(source[3]), slots=int(count)) \
                if source else None
            balancers[name] = Balancer(str(name), tuple(Member(str(url), None, route) for url, route in members),
                                       discover=discover)
        table = MemberTable(balancers, int(exported["cells"]), fd=int(fd))
        os.set_inheritable(table.fd, False)      # ours now: not for a master we start in turn
        return table
    except (LayoutMismatch, KeyError, TypeError, ValueError, OSError) as exc:
        log.error("upgrade: the member table of the master we replace cannot be read (%s): its members' "
                  "counts are the ones it had when the upgrade began", exc)
        if isinstance(fd, int):
            try:
                os.close(fd)
            except OSError:
                pass
        return None


def _member_table(config) -> MemberTable:
    return MemberTable(config.balancers, min(max(CELLS_PER_SLOT * config.mpm.server_limit, 8), 1024))
