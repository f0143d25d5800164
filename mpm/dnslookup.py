"""One round of DNS questions for a balancer with `discover:` (`mpm.discovery` schedules them).

The SRV or A/AAAA question first; then, for SRV targets whose addresses the answer's
additional section did not carry, their A records, or AAAA when there is no A: in the order
the `slots` cut keeps members, a few at a time (ADDRESS_QUESTIONS_AT_ONCE, each holding a
socket, all within the master's shared BUDGET of questions in flight), and only until the
kept ones are known.  Everything runs in the master's selector loop through `DnsQuery`.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import dns.exception
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from conf.discover import name_problem
from mpm.dnsquery import BUDGET, DnsQuery

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
