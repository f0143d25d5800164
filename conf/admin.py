"""The `admin` section: the master's own listener for /metrics, /server-status and /healthz.

    admin: {listen: "127.0.0.1:9180", allow: ["127.0.0.0/8", "::1"]}

Off when absent.  `allow` is what Apache's `Require ip` is to mod_status: addresses or
networks a client must come from, anybody else gets 403; it defaults to loopback, since
the status page names backends and the metrics count traffic.  The address must not be a
data listener's: the admin listener is the master's, never a worker's.
"""

from __future__ import annotations

import ipaddress

from .addresses import parse_listen
from .fields import Section, describe
from .model import Admin, Listener
from .yamlnodes import Scalar

ADMIN_KEYS = ("listen", "allow")
DEFAULT_ALLOW = ("127.0.0.0/8", "::1")


def build_admin(top: Section, listeners: tuple[Listener, ...]) -> Admin | None:
    """The validated admin listener, or None (absent, null, or an error was recorded)."""
    if "admin" not in top or (isinstance(top.raw("admin"), Scalar) and top.raw("admin").value is None):
        return None
    sec = top.mapping("admin", "admin", ADMIN_KEYS)
    if sec is None or not sec.require("listen"):
        return None
    text = sec.string("listen")
    allow = _allow(sec)
    if text is None:
        return None
    try:
        host, port, family = parse_listen(text)
    except ValueError as exc:
        sec.error("listen", f"admin.listen: {exc}")
        return None
    for listener in listeners:
        if listener.port == port and (listener.host == host or "0.0.0.0" in (host, listener.host)
                                      or "::" in (host, listener.host)):
            sec.error("listen", f"admin.listen {text} is also a data listener (line {listener.line}): the admin "
                                "listener is served by the master, never on a data listener; give it its own port")
            return None
    if allow is None:
        return None
    return Admin(host, port, family, allow, sec.line("listen"))


def _allow(sec: Section) -> tuple | None:
    if "allow" not in sec:
        return tuple(ipaddress.ip_network(net) for net in DEFAULT_ALLOW)
    items = sec.sequence("allow")
    if items is None:
        return None
    if not items:
        sec.error("allow", "admin.allow is empty: nobody could reach the admin listener "
                           "(leave 'allow' out for loopback only)")
        return None
    networks, ok = [], True
    for item in items:
        value = item.value if isinstance(item, Scalar) else None
        if not isinstance(value, str):
            sec.errors.add(item.line, f"each admin.allow entry must be an address or network string "
                                      f"(\"10.0.0.0/8\", \"::1\"), got {describe(item)}")
            ok = False
            continue
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            sec.errors.add(item.line, f"admin.allow: '{value}' is not an IP address or network "
                                      "(e.g. \"10.0.0.0/8\", \"192.168.1.5\", \"::1\")")
            ok = False
    return tuple(networks) if ok else None
