"""What the configuration says about clients: per-client limits, trusted proxies, the
WebSocket Origin allow-list of a route, and the PROXY protocol on listeners and backends.

    limits:
      per_client: {connections: 200, tunnels: 100, requests: {rate: 100, burst: 200}, table: 16384}
      trusted_proxies: ["10.0.0.0/8", "192.0.2.7"]
    listen: [{address: "0.0.0.0:80", proxy_protocol: true}]
    routes:
      - {path: /ws/, to: "ws://b/", origins: ["https://app.example.com", "https://*.example.com"],
         origins_required: true, per_client: {tunnels: 5, requests: {rate: "10/s", burst: 20}},
         proxy_protocol: v2}
"""

from __future__ import annotations

import ipaddress
import math
import re

from .fields import Section, describe
from .model import CLIENT_TABLE, PerClient, RequestRate
from .yamlnodes import Scalar, Seq

PER_CLIENT_KEYS = ("connections", "tunnels", "requests", "table")
ROUTE_PER_CLIENT_KEYS = ("connections", "tunnels", "requests")
RATE_KEYS = ("rate", "burst")
TABLE_MIN, TABLE_MAX = 64, 1 << 20
PROXY_PROTOCOL_VERSIONS = {"v1": 1, "v2": 2}
_RATE_TEXT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m|h)\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
# An Origin (RFC 6454 serialisation): scheme "://" host [":" port]; a leading "*." in the
# allow-list matches one or more labels.
_ORIGIN = re.compile(r"^([a-z][a-z0-9+.-]*)://(\*\.)?([a-z0-9._~-]+|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?$")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def per_client(parent: Section, key: str, route: bool) -> PerClient | None:
    """`per_client:` under `limits` (route False) or on a route; None when absent or wrong."""
    sec = parent.mapping(key, parent.name(key), ROUTE_PER_CLIENT_KEYS if route else PER_CLIENT_KEYS)
    if sec is None:
        return None
    before = len(sec.errors)
    connections = sec.integer("connections", 0, 0)
    tunnels = sec.integer("tunnels", 0, 0)
    table = CLIENT_TABLE if route else sec.integer("table", CLIENT_TABLE, TABLE_MIN, TABLE_MAX)
    requests = _rate(sec.mapping("requests", sec.name("requests"), RATE_KEYS)) if "requests" in sec else None
    if len(sec.errors) > before:
        return None
    return PerClient(connections or 0, tunnels or 0, requests, table or CLIENT_TABLE)


def _rate(sec: Section | None) -> RequestRate | None:
    """requests: {rate: 100 | "100/s" | "600/m", burst: 200}; burst defaults to one second's worth."""
    if sec is None or not sec.require("rate"):
        return None
    node = sec.raw("rate")
    value = node.value if isinstance(node, Scalar) else None
    rate = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        rate = float(value)
    elif isinstance(value, str) and _RATE_TEXT.match(value):
        number, unit = _RATE_TEXT.match(value).groups()
        rate = float(number) / _PER[unit] if float(number) > 0 else None
    if rate is None:
        sec.error("rate", f"{sec.name('rate')} must be a positive number of requests per second, "
                          f"or \"N/s\", \"N/m\", \"N/h\"; got {describe(node)}")
        return None
    burst = sec.integer("burst", max(1, math.ceil(rate)), 1)
    if burst is None:
        return None
    return RequestRate(rate, burst)


def trusted_proxies(sec: Section, key: str) -> tuple:
    """mod_remoteip's RemoteIPTrustedProxy: addresses or networks ("10.0.0.0/8", "::1")."""
    items = sec.sequence(key) if key in sec else []
    networks = []
    for item in items or ():
        value = item.value if isinstance(item, Scalar) else None
        try:
            if not isinstance(value, str):
                raise ValueError
            networks.append(_unmapped(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            sec.errors.add(item.line, f"{sec.name(key)} entries must be IP addresses or networks "
                                      f"(\"10.0.0.0/8\", \"::1\"), got {describe(item)}")
    return tuple(networks)


_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _unmapped(network):
    """"::ffff:10.0.0.0/104" as "10.0.0.0/8": the workers compare IPv4-mapped addresses as
    IPv4 (worker.limits.is_trusted), so a network written mapped would never match
    (review 2026-12-03-hostile #6)."""
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(_V4_MAPPED):
        return ipaddress.ip_network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
    return network


def origins(sec: Section) -> tuple[str, ...] | None:
    """route.origins: the Origins a WebSocket upgrade may come from, normalised (lower case,
    default port dropped); None when the route has no list."""
    node = sec.raw("origins")
    if node is None:
        return None
    if not isinstance(node, Seq):
        sec.error("origins", f"route.origins must be a list of origins such as \"https://app.example.com\", "
                             f"got {describe(node)}")
        return None
    found = []
    for item in node.items:
        value = item.value if isinstance(item, Scalar) else None
        normal = normalise_origin(value) if isinstance(value, str) else None
        if normal is None:
            sec.errors.add(item.line, f"route.origins: {describe(item)} is not an origin "
                                      "(scheme://host[:port], e.g. \"https://app.example.com\" or "
                                      "\"https://*.example.com\"; no path)")
            continue
        found.append(normal)
    return tuple(found)


def normalise_origin(text: str) -> str | None:
    """"HTTPS://App.Example.com:443" -> "https://app.example.com"; "null" stays "null"; None if invalid."""
    text = text.strip().lower()
    if text == "null":
        return text
    m = _ORIGIN.match(text)
    if m is None:
        return None
    scheme, star, host, port = m.groups()
    if port is not None:
        if not 0 < int(port) <= 65535:
            return None
        if DEFAULT_PORTS.get(scheme) == int(port):
            port = None
    return f"{scheme}://{star or ''}{host}" + (f":{int(port)}" if port is not None else "")


def proxy_protocol_version(sec: Section) -> int:
    """`proxy_protocol: v1 | v2` on a route or a balancer member (0 when absent)."""
    if "proxy_protocol" not in sec:
        return 0
    value = sec.choice("proxy_protocol", "v1", tuple(PROXY_PROTOCOL_VERSIONS))
    return PROXY_PROTOCOL_VERSIONS.get(value or "", 0)
