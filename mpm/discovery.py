"""Balancer members from DNS: the master asks, every `interval`, and fills the balancer's rows.

Per balancer with `discover:`, a `Discovery` keeps the last good answer and a schedule; a
`mpm.dnslookup.Lookup` is one round of questions.  Everything runs in the master's selector
loop; the housekeeping tick drives timeouts and schedules.  What a round finds goes to
`mpm.slots.place`, which fills, updates and drains the balancer's rows in the shared
member table.

A failed round (no resolver answered, SERVFAIL, REFUSED, NXDOMAIN, or an answer with no
usable record) changes nothing: the last good set stays, the failure is counted and logged
(the first of a streak at error level, then one line a minute), and the next round comes
after `interval`.  An empty answer is taken for an accident rather than an order to empty
the balancer.  A good round's next one comes after `interval`, or the smallest TTL of the
records used when that is longer, up to `max_ttl` (60 s: a record made to be cached for an
hour must not hold a departed member that long; nginx's `resolver valid=` overrides the
TTL the same way, HAProxy and Envoy ask on their own schedule whatever it says).  More records than slots: the first `slots` by (priority,
name, port), the same choice on every instance, and one warning until it fits again.
"""

from __future__ import annotations

import ipaddress
import logging
import time

from conf.discover import name_problem
from mpm.dnslookup import Found, Lookup
from mpm.dnsquery import BUDGET

log = logging.getLogger("mpm.dns")

STREAK_LOG_EVERY = 60.0      # seconds between log lines while a name keeps failing


def tls_export(tls) -> list | None:
    """A member's TLS settings as `mpmctl upgrade` hands them over (JSON), to compare."""
    return None if tls is None else [tls.verify, tls.ca, tls.server_name]


class Discovery:
    """One balancer's members from DNS: the schedule, the last good set, the failures."""

    def __init__(self, selector, name: str, discover, on_found):
        self.selector = selector
        self.name = name
        self.discover = discover
        self.on_found = on_found             # called with us after every good round
        self.found: list[Found] | None = None   # the last good set, cut to the slots
        self.due = 0.0                       # the first round at once
        self.lookup: Lookup | None = None
        self.answered = 0.0                  # wall time of the last good answer
        self.failures = 0                    # rounds that failed, since the master started
        self.failing = 0                     # ... in a row, now
        self.failing_logged = 0.0
        self.last_error = ""
        self.records = 0                     # members in the last good answer, before the cut
        self.overflow_said = False
        self.waiting = 0                     # members found that wait for a free row
        self.left_out_said: tuple = ()       # what the last round left out, logged when it changes
        if discover.fixed:                   # in place before the first fork: no window without it
            self.found, self.answered = self._fixed(), time.time()

    def reconfigure(self, discover) -> None:
        """A reload kept the source (name, type, port, scheme): the set stays, settings change,
        and the name is asked again at once (as nginx resolves its names again on a reload):
        else a long TTL would keep the old answer whatever the operator does."""
        if discover != self.discover and self.lookup is not None:
            self.lookup.close()
            self.lookup = None
        self.due = 0.0
        self.discover = discover
        if discover.fixed:
            self.found = self._fixed()          # its weight may have changed
        if self.found is not None:
            self.found = self._cut(self.found)

    def _fixed(self) -> list[Found]:
        """`dns` is an IP address: the one member it names, as an A/AAAA answer would give it
        (review 2026-12-03-leftovers #1: it was asked as a name, NXDOMAIN, and the balancer
        stayed empty)."""
        d = self.discover
        return [Found(d.dns, d.dns, d.port, d.weight, 0)]

    def tick(self, now: float) -> None:
        if self.lookup is not None:
            self.lookup.tick(now)
        elif self.discover.fixed:
            if now >= self.due:                     # no question: the answer is the address itself
                self._done(self._fixed(), 0, "")
        elif now >= self.due and BUDGET.free():     # else at a later tick, when questions are answered
            known = {f.name: f.address for f in self.found or ()} if self.discover.rtype == "SRV" else None
            self.lookup = Lookup(self.selector, self.discover, self._done, known)

    def _done(self, found, ttl: int, error: str) -> None:
        lookup, self.lookup = self.lookup, None
        now = time.monotonic()
        d = self.discover
        left_out = tuple(lookup.left_out) if lookup is not None else ()
        if left_out != self.left_out_said:          # once per change, not every round
            for why in left_out:
                log.warning("balancer %s: DNS lookup of %s: %s", self.name, d.dns, why)
            self.left_out_said = left_out
        if found is not None and not found:
            error = f"the answer for {d.dns} ({d.rtype}) has no usable record"
        if error:
            self._failed(error, now)
            return
        if self.failing:
            log.warning("balancer %s: DNS answers again for %s after %d failed lookups", self.name, d.dns,
                        self.failing)
        self.failing = 0
        self.answered = time.time()
        self.records = max(len(found), lookup.offered if lookup is not None else 0)
        self.found = self._cut(found, self.records)
        self.due = now + max(d.interval, min(ttl, d.max_ttl))     # a TTL stretches the interval, up to max_ttl
        self.on_found(self)

    def _failed(self, error: str, now: float) -> None:
        d = self.discover
        self.failures += 1
        self.failing += 1
        self.last_error = error
        self.due = now + d.interval
        kept = f"keeping the last {len(self.found)} members" if self.found is not None else "no members found yet"
        if self.failing == 1:
            log.error("balancer %s: DNS lookup of %s (%s) failed: %s; %s", self.name, d.dns, d.rtype, error, kept)
            self.failing_logged = now
        elif now - self.failing_logged >= STREAK_LOG_EVERY:
            log.error("balancer %s: DNS lookup of %s still failing (%d in a row): %s; %s", self.name, d.dns,
                      self.failing, error, kept)
            self.failing_logged = now

    def _cut(self, found: list[Found], offered: int = 0) -> list[Found]:
        """At most `slots` members, chosen the same way on every instance.  `offered`: how
        many the answer had (an SRV round asks only the addresses of those it keeps)."""
        slots = self.discover.slots
        ordered = sorted(found, key=lambda f: (f.priority, f.name, f.port))
        offered = max(offered, len(ordered))
        if offered > slots and not self.overflow_said:
            log.warning("balancer %s: DNS gives %d members for %s but discover.slots is %d: the other %d are "
                        "left out (raise slots)", self.name, offered, self.discover.dns, slots, offered - slots)
        self.overflow_said = offered > slots
        return ordered[:slots]

    def snapshot(self) -> dict:
        d = self.discover
        return {"dns": d.dns, "fixed": d.fixed, "type": d.rtype, "port": d.port or None, "scheme": d.scheme,
                "slots": d.slots,
                "interval": d.interval, "max_ttl": d.max_ttl, "hold": d.hold,
                "next_lookup": round(max(self.due - time.monotonic(), 0.0), 1) if self.lookup is None else 0.0,
                "resolvers": [f"{a}:{p}" for a, p in d.resolvers],
                "records": self.records, "left_out": max(self.records - d.slots, 0),
                "answered": round(time.time() - self.answered, 1) if self.answered else None,
                "failures": self.failures, "failing": self.failing, "last_error": self.last_error or None}

    def export(self) -> dict:
        """What the next master (`mpmctl upgrade`) starts from."""
        return {"source": list(self.discover.source), "tls": tls_export(self.discover.tls), "answered": self.answered,
                "found": [list(f) for f in self.found or ()], "failures": self.failures}

    def adopt(self, exported: dict) -> None:
        if exported.get("source") == list(self.discover.source) and self.found is None:
            try:
                found = [Found(str(n), str(ipaddress.ip_address(a)), int(p), int(w), int(pr))
                         for n, a, p, w, pr in exported.get("found", ())
                         if name_problem(str(n)) is None or str(n) == str(a)]
                answered = float(exported.get("answered") or 0.0)
                self.failures = max(int(exported.get("failures") or 0), 0)    # a counter in /metrics
            except (TypeError, ValueError):
                return
            if found:
                self.found, self.answered = self._cut(found), answered

    def close(self) -> None:
        if self.lookup is not None:
            self.lookup.close()
            self.lookup = None

    def close_in_child(self) -> None:
        if self.lookup is not None:
            self.lookup.close_in_child()
            self.lookup = None
