"""`mpmctl balancer` (Apache's balancer-manager): the balancers as the master sees them, and
an operator's change to one member's status or weight (`mpm.balancer_manager` owns the table).
"""

from __future__ import annotations

import logging

from shm.members import MemberTable

log = logging.getLogger("mpm.master")

ACTIONS = {"enable": "enabled", "disable": "disabled", "drain": "drain", "hot-standby": "hot-standby",
           "standby": "hot-standby"}


def listing(table: MemberTable, discoveries: dict, busy) -> list[dict]:
    """Every balancer with its settings, its DNS source and its members (`busy`: a member's
    exchanges under way, read now)."""
    out = []
    for name, balancer in table.balancers.items():
        health = balancer.health
        out.append({
            "name": name, "method": balancer.method, "sticky": balancer.sticky, "sticky_param": balancer.sticky_param,
            "sticky_insert": balancer.sticky_insert, "nofailover": balancer.nofailover,
            "failonstatus": list(balancer.failonstatus), "retry": balancer.retry,
            "hash_key": {"source": balancer.hash_key.source, "name": balancer.hash_key.name}
            if balancer.method == "hash" else None,
            "health": None if health is None else {
                "method": health.method, "path": health.path if health.method != "TCP" else None,
                "expect": health.expect.pattern if health.expect is not None else None,
                "interval": health.interval, "passes": health.passes, "fails": health.fails,
                "timeout": health.timeout},
            "discover": discoveries[name].snapshot() if name in discoveries else None,
            "members": [dict(table.state(i), busy=busy(i)) for i in table.listed(name)],   # busy: read now
        })
    return out


def set_member(table: MemberTable, args) -> dict:
    """`mpmctl balancer set`: ["NAME", "MEMBER", "drain|disable|enable|hot-standby"] or
    [..., "weight", N], written into the current table, where every worker sees it at its
    next pick (the next reload re-reads the file and so undoes it)."""
    if not isinstance(args, list) or len(args) < 3:
        return _refused("usage: balancer set NAME MEMBER drain|disable|enable|hot-standby|weight N")
    name, who, action = (str(a) for a in args[:3])
    balancer = table.balancers.get(name)
    if balancer is None:
        return _refused(f"no balancer '{name}' (there are: {', '.join(table.balancers) or 'none'})")
    index = _find_member(table, name, who)
    if index is None:
        known = ", ".join(table.url(i) for i in table.listed(name))
        return _refused(f"balancer '{name}' has no member '{who}' (members: {known or 'none yet'})")
    url = table.url(index)
    if table.state(index)["status"] == "gone":
        return _refused(f"member {url} left DNS and its hold has passed: its row is being freed")
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
    """A member by route, by URL (trailing slash or not), by host:port (or address:port for one
    found in DNS; an IPv6 address in brackets, as in its URL), or by 1-based position in the
    listing."""
    listed = table.listed(name)
    for index in listed:
        url, backend = table.url(index), table.backend(index)
        names = {table.route(index), url, url.rstrip("/"), _host_port(backend.sockaddr[0], backend.port)}
        discover = table.rows[index].discover
        if discover is None or discover.rtype == "SRV":     # A/AAAA members all share the name asked
            names.add(_host_port(backend.host, backend.port))
        if who in names or who.rstrip("/") == url.rstrip("/"):
            return index
    if who.isdigit() and 1 <= int(who) <= len(listed):
        return listed[int(who) - 1]
    return None


def _host_port(host: str, port: int) -> str:
    """How a URL writes them: `[::1]:8080` for an IPv6 address (`::1:8080` reads as an address)."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refused(message: str) -> dict:
    return {"ok": False, "errors": [message]}
