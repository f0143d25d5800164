"""`discover:` on a balancer -> Discover: members found in DNS by the master.

    discover: {dns: "_http._tcp.app.internal", type: SRV, slots: 32, interval: 5, hold: 30,
               resolvers: ["127.0.0.1:53"], scheme: http, timeout: 2}
    discover: {dns: "app.internal", type: A, port: 3000, weight: 1, max_ttl: 60}

Nothing is resolved here (the answer changes while the server runs: the master asks again
every `interval`); what is checked is that the question can be asked: a valid name, a type,
a port where the records carry none, and somewhere to send it.  The system's resolvers are
read from /etc/resolv.conf here, once per load, so a reload picks up a changed file.

An IP address as `dns` (type A or AAAA) is one fixed member, never asked, as nginx's
`server 10.0.0.1 resolve` and HAProxy's `server ... 10.0.0.1:80 resolvers r` take it: a
templated file may hold an address where another instance has a name.  With type SRV it is
refused, as nginx refuses `service=` with an address: an SRV record belongs to a name.
"""

from __future__ import annotations

import ipaddress
import re

from .addresses import BACKEND_SCHEMES, DEFAULT_PORTS, TLS_SCHEMES
from .fields import Section, describe
from .model import DISCOVER_TYPES, BackendTLS, Discover
from .tlsfiles import backend_tls

DISCOVER_KEYS = ("dns", "type", "port", "scheme", "tls", "slots", "interval", "max_ttl", "resolvers", "hold",
                 "weight", "timeout")
RESOLV_CONF = "/etc/resolv.conf"
SLOTS_MAX = 1024                # rows of the shared member table, per balancer
INTERVAL_MIN = 0.2              # seconds: asking more often than this is a flood, not discovery
_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")   # `_http` and `_tcp` included


def build_discover(sec: Section | None) -> Discover | None:
    """The Discover of a balancer's `discover:` mapping, or None after recording its errors."""
    if sec is None:
        return None
    errors_before = len(sec.errors)
    d = Discover("")
    name = sec.string("dns") if sec.require("dns") else None
    rtype = sec.string("type", d.rtype)
    if rtype is not None and rtype.upper() not in DISCOVER_TYPES:
        sec.error("type", f"{sec.name('type')} must be one of {', '.join(DISCOVER_TYPES)}; got '{rtype}'")
    rtype = rtype.upper() if rtype else d.rtype
    address = None
    if name is not None:
        name = name.strip().rstrip(".")
        address = literal_address(name)
        if address is not None:
            name = address
            if rtype == "SRV":
                sec.error("dns", f"{sec.name('dns')} '{name}' is an IP address: SRV records are asked of a name; "
                                 "for a fixed address use type A or AAAA, or list it under 'members'")
            elif rtype != ("AAAA" if ":" in name else "A"):       # a type that could never give it
                sec.error("type", f"{sec.name('type')} {rtype} does not fit the IPv{6 if ':' in name else 4} "
                                  f"address '{name}' (type {'AAAA' if ':' in name else 'A'})")
        elif name_problem(name):
            sec.error("dns", f"{sec.name('dns')} '{name}' {name_problem(name)}")
    scheme = sec.choice("scheme", d.scheme, BACKEND_SCHEMES)
    tls = None
    if scheme in TLS_SCHEMES:
        tls = backend_tls(sec) or BackendTLS()
    elif "tls" in sec:
        sec.error("tls", f"{sec.name('tls')} only applies to scheme https or wss")
    port = sec.integer("port", DEFAULT_PORTS.get(scheme or "http", 80), 1, 65535)
    weight = sec.integer("weight", d.weight, 1, 100)
    if rtype == "SRV":
        for key, why in (("port", "ports"), ("weight", "weights")):
            if key in sec:
                sec.error(key, f"{sec.name(key)} only applies to type A or AAAA (SRV records carry their own {why})")
    slots = sec.integer("slots", d.slots, 1, SLOTS_MAX)
    interval = sec.number("interval", d.interval)
    if interval is not None and interval < INTERVAL_MIN:
        sec.error("interval", f"{sec.name('interval')} must be at least {INTERVAL_MIN:g} seconds, got {interval:g}")
    max_ttl = sec.number("max_ttl", d.max_ttl, positive=False)     # 0: the TTL is not read, every `interval`
    hold = sec.number("hold", d.hold, positive=False)
    timeout = sec.number("timeout", d.timeout)
    # an address is never asked: no resolver needed (those given are still checked)
    resolvers = _resolvers(sec) if address is None or "resolvers" in sec else ()
    if len(sec.errors) > errors_before or None in (name, scheme, port, weight, slots, interval, max_ttl, hold, timeout):
        return None
    return Discover(name, rtype, port if rtype != "SRV" else 0, scheme, tls, slots, interval, max_ttl, resolvers,
                    hold, weight, timeout, sec.node.line)


def literal_address(name: str) -> str | None:
    """`name` as an IP address ("10.0.0.1", "::1", "[::1]"), written as the rows write it, or None."""
    try:
        return str(ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name))
    except ValueError:
        return None


def name_problem(name: str) -> str | None:
    """Why `name` is not a plain DNS host name (the configured one, or an SRV target DNS gave), or None."""
    if not name or len(name) > 253:
        return "is not a DNS name (1 to 253 characters)"
    bad = next((label for label in name.split(".") if not _LABEL.match(label)), None)
    if bad is not None:
        return f"is not a DNS name (label '{bad}': letters, digits, '-' and '_', at most 63)"
    return None


def _resolvers(sec: Section) -> tuple[tuple[str, int], ...] | None:
    """["10.0.0.2", "127.0.0.1:5353", "[::1]:53"], or the nameservers of /etc/resolv.conf."""
    if "resolvers" not in sec:
        found = system_resolvers()
        if not found:
            sec.error(None, f"{sec.label}: {RESOLV_CONF} names no nameserver; set {sec.name('resolvers')}")
            return None
        return found
    items = sec.sequence("resolvers")
    if items is None:
        return None
    if not items:
        sec.error("resolvers", f"{sec.name('resolvers')} is empty; leave it out to use {RESOLV_CONF}")
        return None
    out = []
    for item in items:
        value = getattr(item, "value", None)
        try:
            if not isinstance(value, str):
                raise ValueError(f"must be \"ADDRESS\" or \"ADDRESS:PORT\" strings, got {describe(item)}")
            out.append(parse_resolver(value))
        except ValueError as exc:
            sec.errors.add(item.line, f"{sec.name('resolvers')}: {exc}")
            return None
    return tuple(out)


def parse_resolver(text: str) -> tuple[str, int]:
    """'10.0.0.2' / '10.0.0.2:5353' / '::1' / '[::1]:5353' -> (address, port); ValueError otherwise."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"'{text}' must look like \"[::1]:53\"")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"'{text}': a resolver is a numeric IP address (with an optional port)") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"'{text}': port '{port}' is not 1 to 65535")
    return str(address), int(port)


def system_resolvers(path: str = RESOLV_CONF) -> tuple[tuple[str, int], ...]:
    """The `nameserver` lines of resolv.conf (glibc reads at most three), port 53."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        found.append(parse_resolver(words[1].split("%")[0]))
                    except ValueError:
                        continue
    except OSError:
        return ()
    return tuple(found[:3])
