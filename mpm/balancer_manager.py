"""The master's side of the balancers: the shared member table, its health checks, and
`mpmctl balancer` (Apache's balancer-manager).

The table (worker/balancer.py) is created before a generation forks and handed to its
workers; a reload makes a new one (members may have changed) that keeps what the old
one knew of each member's health, while the old generation finishes on its own table.
Each housekeeping tick frees the counter cells of workers that are gone and runs the
health checks.  `mpmctl balancer set` writes a member's status or weight into the
current table, where every worker sees it at its next pick; the next reload re-reads
the file and so undoes it.
"""

from __future__ import annotations

import logging

from mpm.health import HealthChecker
from worker.balancer import MemberTable

log = logging.getLogger("mpm.master")

CELLS_PER_SLOT = 4        # counter cells per ServerLimit slot: room for recycled and handing-over workers
ACTIONS = {"enable": "enabled", "disable": "disabled", "drain": "drain", "hot-standby": "hot-standby",
           "standby": "hot-standby"}


class BalancerManager:
    def __init__(self, config, selector):
        self.table: MemberTable | None = None
        self.retired: list[MemberTable] = []     # older generations' tables, while their workers live
        self.health = HealthChecker(selector)
        self.configure(config)

    def configure(self, config) -> None:
        """A new table for the generation about to fork (start, and every successful reload)."""
        self.config = config
        cells = min(max(CELLS_PER_SLOT * config.mpm.server_limit, 8), 1024)
        table = MemberTable(config.balancers, cells)
        if self.table is not None:
            table.carry_from(self.table)
            self.retired.append(self.table)
        self.table = table
        self.health.configure(table)

    def tick(self, alive, checks: bool = True) -> None:
        """Housekeeping: free the cells of dead workers, drop tables nobody uses, run checks."""
        self.table.release_dead(alive)
        for table in list(self.retired):
            if not table.release_dead(alive):
                self.retired.remove(table)
                table.close()
        if checks:
            self.health.tick()

    def close_in_child(self) -> None:
        self.health.close_in_child()
        for table in self.retired:
            table.close()
        self.retired = []

    # == mpmctl balancer ========================================================================
    def control(self, request: dict) -> dict:
        if request.get("set"):
            return self._set(request["set"])
        return {"ok": True, "balancers": self.snapshot()}

    def snapshot(self) -> list[dict]:
        table, out = self.table, []
        for name, balancer in table.balancers.items():
            health = balancer.health
            out.append({
                "name": name, "method": balancer.method, "sticky": balancer.sticky,
                "sticky_insert": balancer.sticky_insert, "nofailover": balancer.nofailover,
                "failonstatus": list(balancer.failonstatus), "retry": balancer.retry,
                "hash_key": {"source": balancer.hash_key.source, "name": balancer.hash_key.name}
                if balancer.method == "hash" else None,
                "health": None if health is None else {
                    "method": health.method, "path": health.path if health.method != "TCP" else None,
                    "expect": health.expect.pattern if health.expect is not None else None,
                    "interval": health.interval, "passes": health.passes, "fails": health.fails,
                    "timeout": health.timeout},
                "members": [table.state(i) for i in range(table.first[name], table.first[name] + len(balancer.members))],
            })
        return out

    def _set(self, args) -> dict:
        """["NAME", "MEMBER", "drain|disable|enable|hot-standby"] or [..., "weight", N]."""
        if not isinstance(args, list) or len(args) < 3:
            return _refused("usage: balancer set NAME MEMBER drain|disable|enable|hot-standby|weight N")
        name, who, action = (str(a) for a in args[:3])
        table = self.table
        balancer = table.balancers.get(name)
        if balancer is None:
            return _refused(f"no balancer '{name}' (there are: {', '.join(table.balancers) or 'none'})")
        index = _find_member(table, name, who)
        if index is None:
            known = ", ".join(m.route or m.url for m in balancer.members)
            return _refused(f"balancer '{name}' has no member '{who}' (members: {known})")
        url = table.members[index].url
        if action == "weight":
            try:
                weight = int(args[3]) if len(args) > 3 else None
            except (TypeError, ValueError):
                weight = None
            if weight is None or not 1 <= weight <= 100:
                return _refused("weight takes an integer from 1 to 100")
            table.set_weight(index, weight)
            log.warning("balancer-manager: balancer %s member %s: weight %d", name, url, weight)
        elif action in ACTIONS:
            status = ACTIONS[action]
            table.set_status(index, status)
            if status == "enabled":
                table.clear_error(index)     # the operator vouches for it (health checks still rule)
            log.warning("balancer-manager: balancer %s member %s: %s", name, url, status)
        else:
            return _refused(f"unknown action '{action}': drain, disable, enable, hot-standby or weight N")
        return {"ok": True, "balancer": name, "member": table.state(index)}


def _find_member(table: MemberTable, name: str, who: str) -> int | None:
    """A member by route, by URL (trailing slash or not), by host:port, or by 1-based position."""
    first = table.first[name]
    members = table.balancers[name].members
    for i, member in enumerate(members):
        backend = member.backend
        if who in (member.route, member.url, member.url.rstrip("/"), f"{backend.host}:{backend.port}") \
                or who.rstrip("/") == member.url.rstrip("/"):
            return first + i
    if who.isdigit() and 1 <= int(who) <= len(members):
        return first + int(who) - 1
    return None


def _refused(message: str) -> dict:
    return {"ok": False, "errors": [message]}
