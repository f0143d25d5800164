"""The DNS rows of the member table: who holds them, written by the master only.

A found member is known by its name and port (the SRV target, or the A/AAAA address), so
the same member keeps its row across answers; a new address under the same name is written
into the row (the workers rebuild its Origin), not treated as a new member.

    new in DNS          takes an empty row: weight and status (SRV priority: lowest enabled,
                        the others hot-standby) from the record; health down until it passes
                        a check when the balancer has health checks; counters from zero
    still in DNS        `seen` moves; weight and status follow the record when the record
                        changed them (an operator's `mpmctl balancer set` stands until then)
    gone from DNS       drains: no new requests while a member in DNS can take them, its
                        exchanges, tunnels and sticky sessions go on; the row is freed when
                        `hold` passes (or sooner, once nothing is open on it, for a newcomer
                        that waits for a row); what is still open then is `gone`, and the
                        workers close it (then the row is freed)
    back within hold    it simply carries on

Writes to a row come before its `epoch` moves, and `membership` moves last, so a worker
that sees the new membership reads whole rows.
"""

from __future__ import annotations

import logging
import socket
import time

from shm.members import DOWN, DRAIN, EMPTY, ENABLED, GONE, STANDBY, UP

log = logging.getLogger("mpm.dns")

# What a DNS row carries from an old table into a reload's new one, besides who holds it.
_CARRIED = ("status", "weight", "health", "hc_passes", "hc_fails", "hc_last", "checked", "error_until", "error_at",
            "seen", "leaving", "dns_weight", "dns_status")


def place(table, name: str, wanted: list, health_checks: bool, seen: float) -> tuple[bool, int]:
    """Make balancer `name`'s DNS rows hold `wanted` (already cut to the slots), as DNS gave
    them at wall time `seen`.  Returns whether anything a worker derives from changed, and how
    many members wait for a row (every row held, some by members still draining)."""
    held = _held(table, name)
    top = min((f.priority for f in wanted), default=0)
    now = time.monotonic()
    changed = False
    waiting = []
    for f in wanted:
        index = held.pop((f.name, f.port), None)
        if index is None:
            waiting.append(f)
            continue
        changed |= _update(table, index, f, ENABLED if f.priority == top else STANDBY)
        table.seen[index] = seen
    for index in held.values():       # no longer in DNS: drain
        if not table.leaving[index]:
            table.leaving[index] = now
            if table.status[index] in (ENABLED, STANDBY):
                table.status[index] = DRAIN
            log.warning("balancer %s: member %s left DNS: draining (hold %gs)", name, table.url(index),
                        table.rows[index].discover.hold)
    while waiting:
        index = _free_row(table, name)
        if index is None:
            break
        f = waiting.pop(0)
        _occupy(table, index, f, ENABLED if f.priority == top else STANDBY, health_checks)
        table.seen[index] = seen
        log.info("balancer %s: member %s found in DNS (weight %d%s)", name, table.url(index), table.weight[index],
                 ", hot-standby" if table.status[index] == STANDBY else "")
        changed = True
    if changed:
        table.membership[0] += 1
    return changed, len(waiting)


def settle(table, name: str, busy, needed: bool = False) -> bool:
    """Every tick: a departed member keeps its row (draining) until `hold` passes, or until
    nothing is open on it and a newcomer (`needed`) waits for a row; past `hold`, what is
    still open on it is marked gone so the workers close it.  Kept, it serves its sticky
    sessions, and new requests when no member in DNS can take them (newcomers not yet past
    their first check: a blue/green switch answers from the old set meanwhile, not 503).
    `busy(index)`: what is open on the member in every generation still running.  True when
    a row was freed."""
    now = time.monotonic()
    freed = False
    for index in table.slots[name]:
        leaving = table.leaving[index]
        if not leaving:
            continue
        open_now = busy(index)
        past_hold = now - leaving >= table.rows[index].discover.hold
        if open_now == 0 and (past_hold or needed):
            log.info("balancer %s: member %s drained: its row is free", name, table.url(index))
            _vacate(table, index)
            freed = True
        elif open_now and table.status[index] != GONE and past_hold:
            log.warning("balancer %s: member %s left DNS %gs ago; closing its tunnels (%d exchanges and tunnels "
                        "open on it; an HTTP exchange runs to its end)",
                        name, table.url(index), table.rows[index].discover.hold, open_now)
            table.status[index] = GONE
    if freed:
        table.membership[0] += 1
    return freed


def carry(old, new, name: str) -> None:
    """A reload that kept the balancer's DNS source: the new table starts with the members the
    old one held (health, status, draining and all), in the same order."""
    rows = iter(new.slots[name])
    for src in old.slots.get(name, ()):
        found = old.found(src)
        if found is None:
            continue
        dst = next(rows, None)
        if dst is None:
            return                    # fewer slots now: `place` drains what does not fit
        _write_address(new, dst, found[0], found[1], found[2])
        for column in _CARRIED:
            getattr(new, column)[dst] = getattr(old, column)[src]
        if new.rows[dst].balancer.health is None:   # health checks gone: their verdict with them
            new.health[dst] = UP
        new.epoch[dst] += 1
    new.membership[0] += 1


def depart(table, name: str) -> int:
    """Every member of balancer `name` as if it had just left DNS (a reload changed what the
    balancer asks): they drain for `hold`, or carry on if the new answer names them.  Returns
    how many there are."""
    now = time.monotonic()
    count = 0
    for index in table.slots[name]:
        if table.found(index) is None:
            continue
        count += 1
        if not table.leaving[index]:
            table.leaving[index] = now
            if table.status[index] in (ENABLED, STANDBY):
                table.status[index] = DRAIN
    table.membership[0] += 1
    return count


def _held(table, name: str) -> dict:
    held = {}
    for index in table.slots[name]:
        found = table.found(index)
        if found is not None:
            held[(found[0], found[2])] = index
    return held


def _update(table, index: int, f, status: int) -> bool:
    """A member still (or again) in DNS.  The record's weight and tier are applied when they
    differ from what DNS said last time, so an operator's `set` stands until DNS changes."""
    changed = False
    if table.found(index)[1] != f.address:
        _write_address(table, index, f.name, f.address, f.port)
        table.epoch[index] += 1
        changed = True
    if table.leaving[index]:             # back within hold
        table.leaving[index] = 0.0
        if table.status[index] in (DRAIN, GONE):
            table.status[index] = status
    if table.dns_weight[index] != f.weight:
        table.weight[index] = table.dns_weight[index] = f.weight
    if table.dns_status[index] != status:
        table.dns_status[index] = status
        if table.status[index] in (ENABLED, STANDBY):
            table.status[index] = status
    return changed


def _free_row(table, name: str) -> int | None:
    """An empty row; failing that, a gone one (what is still open on it then counts against the
    newcomer until it closes, which the workers are doing)."""
    rows = table.slots[name]
    for wanted in (EMPTY, GONE):
        for index in rows:
            if table.status[index] == wanted:
                return index
    return None


def _occupy(table, index: int, f, status: int, health_checks: bool) -> None:
    _write_address(table, index, f.name, f.address, f.port)
    table.weight[index] = table.dns_weight[index] = f.weight
    table.dns_status[index] = status
    table.health[index] = DOWN if health_checks else UP      # traffic after the first good check
    for column in ("hc_passes", "hc_fails", "hc_last", "lbstatus", "busy_elsewhere"):
        getattr(table, column)[index] = 0
    for column in ("checked", "error_until", "error_at", "leaving"):
        getattr(table, column)[index] = 0.0
    for counter in ("requests", "bytes", "failures"):   # counts start at zero for the newcomer
        start = index * table.cells
        getattr(table, counter + "_past")[index] = -sum(getattr(table, counter)[start:start + table.cells])
    table.epoch[index] += 1
    table.status[index] = status


def _vacate(table, index: int) -> None:
    table.status[index] = EMPTY
    table.leaving[index] = 0.0
    table.set_bytes("name", index, b"")
    table.epoch[index] += 1


def _write_address(table, index: int, name: str, address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    table.set_bytes("name", index, name.encode("ascii", "replace"))
    table.address[index * 16:(index + 1) * 16] = socket.inet_pton(family, address).ljust(16, b"\0")
    table.family[index] = family
    table.port[index] = port
