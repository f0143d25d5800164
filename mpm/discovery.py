"""Balancer members from DNS: the master asks, every `interval`, and fills the balancer's rows.

Per balancer with `discover:`, a `Discovery` keeps the last good answer and a schedule; a
`Lookup` is one round of questions (the SRV or A/AAAA question, then, for SRV targets whose
addresses the answer's additional section did not carry, their A records, or AAAA when
there is no A: in the order the `slots` cut keeps members, a few at a time, and only until
the kept ones are known).  Everything runs in the master's selector loop through `DnsQuery`; the
housekeeping tick drives timeouts and schedules.  What a round finds goes to
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
from typing import NamedTuple

import dns.exception
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from conf.discover import name_problem
from mpm.dnsquery import BUDGET, DnsQuery

log = logging.getLogger("mpm.dns")

STREAK_LOG_EVERY = 60.0      # seconds between log lines while a name keeps failing
ADDRESS_QUESTIONS_AT_ONCE = 32   # an SRV round's address questions in flight (each holds a socket)


class Found(NamedTuple):
    """One member as DNS gave it."""
    name: str          # the SRV target, or the address an A/AAAA record gave
    address: str
    port: int
    weight: int
    priority: int      # SRV: lowest first, the others hot standby; A/AAAA: 0


class Lookup:
    """One round of questions for one balancer; `done(found, ttl, error)` once, at the end.
    `known`: SRV target -> the address the last good round gave it, kept for a target whose
    own address question fails this round (one failing name must not freeze the others)."""

    def __init__(self, selector, discover, done, known: dict | None = None):
        self.selector = selector
        self.discover = discover
        self.done = done
        self.known = known or {}
        self.left_out: list[str] = []             # why records were left out, for the log
        self.queries: list[DnsQuery] = []
        self.records: list[tuple] = []            # SRV: (target, port, weight, priority)
        self.addresses: dict[str, list[str]] = {}  # SRV target -> addresses
        self.waiting = 0                          # follow-up questions not answered yet
        self.unasked: list[str] = []              # SRV targets still to ask, the next one last
        self.settled: set[str] = set()            # ... asked, and found to have no address
        self.cursor = self.kept = 0               # records `_cut` keeps that are known so far
        self.offered = 0                          # SRV: members the answer offered, before the cut
        self.asking_until = 0.0                   # ... no new address question after this
        self.ttl = None
        self.finished = False
        self.held = 0                             # questions of ours counted in BUDGET
        self.blocked = False                      # BUDGET was spent with nothing of ours in flight
        self._ask(discover.dns, discover.rtype, self._on_answer)

    def _ask(self, name: str, rdtype: str, callback) -> None:
        """A question that takes one of BUDGET's places, until `_release` (or `close`)."""
        d = self.discover
        query = DnsQuery(self.selector, name, rdtype, d.resolvers, d.timeout, callback)
        BUDGET.take()                # counted once it exists: a question that could not be made holds nothing
        self.held += 1
        self.queries.append(query)

    def _release(self) -> None:
        if self.held:
            self.held -= 1
            BUDGET.give(1)

    def _records(self, answer) -> list:
        """The answer's records for the name asked, or for the end of its CNAME chain (at most
        16 links: a loop is a chain too long), of class IN, as a stub resolver reads them.
        Records of any other owner are left out: they were members before (an A answer with
        `other.test A ...` beside the name's own, review 2026-12-03-dns #3); HAProxy refuses
        such an answer, glibc ignores them.  Another class (CH, HS) parses into other fields."""
        try:
            chain = answer.resolve_chaining()
        except dns.exception.DNSException as exc:       # a CNAME loop, an answer for NXDOMAIN...
            self.left_out.append(f"answer for {answer.question[0].name}: {exc}")
            return []
        rdtype = answer.question[0].rdtype
        stray = sum(len(rrset) for rrset in answer.answer if rrset.rdtype == rdtype and rrset is not chain.answer
                    and rrset.rdclass == dns.rdataclass.IN)
        if stray:
            self.left_out.append(f"{stray} {dns.rdatatype.to_text(rdtype)} records of other names than "
                                 f"{chain.canonical_name} in its answer; left out")
        if chain.answer is None:
            return []
        self.ttl = chain.minimum_ttl if self.ttl is None else min(self.ttl, chain.minimum_ttl)
        return list(chain.answer)

    def _on_answer(self, answer, error: str) -> None:
        d = self.discover
        self._release()
        if answer is None:
            self._finish(None, error)
            return
        if answer.rcode() == dns.rcode.NXDOMAIN:
            self._finish(None, f"{d.dns} does not exist (NXDOMAIN)")
            return
        if d.rtype != "SRV":
            addresses = sorted({rd.address for rd in self._records(answer)})
            self._finish([Found(a, a, d.port, d.weight, 0) for a in addresses], "")
            return
        for rd in self._records(answer):
            target = rd.target.to_text(omit_final_dot=True)
            if not target or target == ".":    # "." = the service is decidedly not here (RFC 2782)
                continue
            problem = name_problem(target)     # it becomes a Host header, SNI and a table row
            if problem:
                self.left_out.append(f"SRV target '{target[:80]}' {problem}")
                continue
            if rd.port == 0:                   # reserved (RFC 6335): nothing can be reached there
                self.left_out.append(f"SRV record for {target} has port 0; left out")
                continue
            self.records.append((target.lower(), rd.port, rd.weight, rd.priority))
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):   # IPv4 first, as glibc prefers
            for rrset in answer.additional:
                if rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN:
                    owner = rrset.name.to_text(omit_final_dot=True).lower()
                    self.addresses.setdefault(owner, []).extend(sorted(rd.address for rd in rrset))
        best = {}       # one member per (target, port): its lowest priority, then largest weight,
        for record in sorted(self.records, key=lambda r: (r[3], -r[2])):   # whatever order the resolver chose
            best.setdefault(record[:2], record)     # (the first record flapped: review 2026-12-03-dns #4)
        self.records = sorted(best.values(), key=lambda r: (r[3], r[0], r[1]))    # `_cut`'s order
        self.unasked = [t for t in dict.fromkeys(r[0] for r in self.records) if t not in self.addresses][::-1]
        # A few at a time must not make a round of unanswered targets last for ever (the set
        # is not refreshed meanwhile): after what two questions may take, no new one is asked.
        self.asking_until = time.monotonic() + 2 * self.discover.timeout * (len(self.discover.resolvers) + 1)
        self._ask_more()

    def _ask_more(self) -> None:
        """Ask targets' addresses in the order `_cut` keeps members, a few at a time, until the
        members it keeps are known: asked all at once, an answer of 1,500 targets held 1,500
        sockets in the master, every descriptor it had (review 2026-12-03-balancers #3)."""
        slots = self.discover.slots
        if self.unasked and time.monotonic() >= self.asking_until:
            self._stop_asking()
        # (one in flight is counted as kept: most targets have an address; if not, its answer asks the next)
        self.blocked = False
        while (self.unasked and self.waiting < ADDRESS_QUESTIONS_AT_ONCE and not self._enough()
               and self.kept + self.waiting < slots):
            if not BUDGET.free():         # an answer of ours asks again; with none out, the next tick
                self.blocked = not self.waiting
                if self.blocked:
                    return
                break
            target = self.unasked.pop()
            self.waiting += 1
            self._ask(target, "A", lambda answer, error, target=target: self._on_address(target, "A", answer, error))
        if not self.waiting:
            self._complete()

    def _stop_asking(self) -> None:
        """The round's time for address questions is up: the targets not asked yet keep the
        address the last good round gave them, as a target whose question fails does."""
        kept = [t for t in self.unasked if t in self.known]
        for target in kept:
            self.addresses[target] = [self.known[target]]
        self.left_out.append(f"{len(self.unasked)} SRV targets not asked in time (slow answers); "
                             f"{len(kept)} kept their last address")
        self.unasked = []

    def _enough(self) -> bool:
        """Whether the first `slots` records with an address are known, no target before
        them still unknown (the cursor only moves forward: each record is looked at once)."""
        records, slots = self.records, self.discover.slots
        while self.cursor < len(records) and self.kept < slots:
            target = records[self.cursor][0]
            if target in self.addresses:
                self.kept += 1
            elif target not in self.settled:
                return False
            self.cursor += 1
        return True

    def _on_address(self, target: str, rdtype: str, answer, error: str) -> None:
        if self.finished:
            return
        if answer is None:
            known = self.known.get(target)
            self.left_out.append(f"{target} {rdtype}: {error}; "
                                 + (f"kept its last address {known}" if known else "left out"))
            if known:
                self.addresses[target] = [known]
            self.settled.add(target)
            self._answered()
            return
        found = sorted(rd.address for rd in self._records(answer))
        if not found and rdtype == "A":
            self._release()                       # the A question is done; the AAAA one takes its place
            self._ask(target, "AAAA", lambda answer, error: self._on_address(target, "AAAA", answer, error))
            return
        if found:
            self.addresses[target] = found
        else:
            self.left_out.append(f"SRV target {target} has no address; left out")
        self.settled.add(target)
        self._answered()

    def _answered(self) -> None:
        self.waiting -= 1
        self._release()
        if self._enough():
            self._complete()        # the questions still out are closed: their answers cannot count
        else:
            self._ask_more()

    def _complete(self) -> None:
        found = {}
        for target, port, weight, priority in self.records:
            addresses = self.addresses.get(target)
            if addresses and (target, port) not in found:
                # RFC 2782: weight 0 is "very rarely"; here it is the smallest weight there is.
                found[(target, port)] = Found(target, addresses[0], port, max(weight, 1), priority)
        # What the answer offers, as when every target was asked: those with an address, and
        # those never asked (past the cut); not those found to have none (slots would not help).
        self.offered = len(found) + sum(1 for r in self.records if r[0] not in self.addresses
                                        and r[0] not in self.settled)
        self._finish(list(found.values()), "")

    def _finish(self, found, error: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.close()
        self.done(found, self.ttl or 0, error)

    def tick(self, now: float) -> None:
        for query in list(self.queries):
            query.tick(now)
        if self.blocked and not self.finished:
            self._ask_more()

    def close(self) -> None:
        for query in self.queries:
            query.close()
        self.queries = []
        BUDGET.give(self.held)
        self.held = 0

    def close_in_child(self) -> None:
        for query in self.queries:
            query.close_in_child()
        self.queries = []
        self.held = 0


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
