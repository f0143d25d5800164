"""`balancers:` -> Balancer, Member, Backend (a member's or a route's backend URL).

<Proxy balancer://> and BalancerMember in YAML.  Every backend host is resolved here because
a worker loop must never wait on DNS; a balancer's `discover:` asks DNS later, in the master.
"""

from __future__ import annotations

import re

from .addresses import (
    BACKEND_SCHEMES,
    BALANCER_NAME,
    TLS_SCHEMES,
    ParsedURL,
    Resolver,
    parse_url,
)
from .clients import proxy_protocol_version
from .discover import DISCOVER_KEYS, build_discover
from .fields import REGEX_ERRORS, Errors, Section, describe
from .model import (
    BALANCER_METHODS,
    HASH_SOURCES,
    HEALTH_METHODS,
    MEMBER_STATUSES,
    Backend,
    BackendTLS,
    Balancer,
    HashKey,
    HealthCheck,
    Member,
)
from .tlsfiles import backend_tls
from .yamlnodes import Map, Node, Scalar, Seq

BALANCER_KEYS = ("method", "sticky", "members", "nofailover", "failonstatus", "retry", "health", "hash_key",
                 "discover")
HEALTH_KEYS = ("method", "path", "expect", "interval", "passes", "fails", "timeout")
HASH_KEYS = ("source", "name")
STICKY_KEYS = ("cookie", "insert", "param")
MEMBER_KEYS = ("url", "route", "weight", "status", "max_connections", "tls", "proxy_protocol")

# RFC 9110 token: what a header name or an Upgrade protocol name may be made of.
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

def build_backend(sec: Section, key: str, url: ParsedURL, resolver: Resolver) -> Backend | None:
    """Resolve a URL's host now; TLS settings from the sibling `tls:` mapping (https/wss only),
    the PROXY protocol version to send from the sibling `proxy_protocol:`."""
    tls = None
    if url.scheme in TLS_SCHEMES:
        tls = backend_tls(sec) or BackendTLS()
    elif "tls" in sec:
        sec.error("tls", f"{sec.name('tls')} only applies to https:// and wss:// targets")
    try:
        family, sockaddr = resolver.resolve(url.host, url.port)
    except ValueError as exc:
        sec.error(key, str(exc))
        return None
    return Backend(url.scheme, url.host, url.port, sockaddr, family, tls, proxy_protocol_version(sec))


def build_balancers(top: Section, resolver: Resolver) -> dict[str, Balancer]:
    if "balancers" not in top:
        return {}
    balancers_sec = top.mapping("balancers", "balancers", None)
    if balancers_sec is None:
        return {}
    balancers = {}
    for name, entry in balancers_sec.entries():
        if not BALANCER_NAME.match(name):
            top.errors.add(entry.key_line, f"balancer name '{name}' may only use letters, digits, '.', '_' and '-'")
            continue
        sec = Section.of(top.errors, entry.value, f"balancers.{name}", BALANCER_KEYS)
        if sec is None:
            continue
        balancer = _balancer(sec, name, entry.key_line, resolver)
        if balancer is not None:
            balancers[name] = balancer
    return balancers


def _balancer(sec: Section, name: str, line: int, resolver: Resolver) -> Balancer | None:
    """The Balancer, or None if anything in it was wrong (the errors are recorded)."""
    errors_before = len(sec.errors)
    method = sec.choice("method", "byrequests", BALANCER_METHODS)
    sticky, sticky_insert, sticky_param = _sticky(sec)
    nofailover = sec.boolean("nofailover", False)
    failonstatus = _statuses(sec, "failonstatus")
    retry = sec.number("retry", 60.0, positive=False)
    health = _health(sec)
    hash_key = _hash_key(sec, method)
    discover = build_discover(sec.mapping("discover", sec.name("discover"), DISCOVER_KEYS))
    members: list[Member] = []
    if "discover" in sec:       # DNS may be all the members there are
        items = sec.sequence("members")
    else:
        items = sec.sequence("members") if sec.require("members") else None
        if items == []:
            sec.error("members", f"balancer '{name}' needs at least one member (or a 'discover' section)")
    seen_urls: dict[tuple, int] = {}
    seen_routes: dict[str, int] = {}
    for item in items or ():
        member = _member(sec.errors, item, f"balancers.{name}.members", resolver)
        if member is None:
            continue
        where = (member.backend.scheme, member.backend.host, member.backend.port)
        if where in seen_urls:
            sec.errors.add(member.line, f"balancer '{name}' lists {member.url} twice "
                                        f"(first at line {seen_urls[where]})")
        seen_urls.setdefault(where, member.line)
        if member.route is not None:
            if member.route in seen_routes:
                sec.errors.add(member.line, f"balancer '{name}': route '{member.route}' is already used "
                                            f"by the member at line {seen_routes[member.route]}")
            seen_routes.setdefault(member.route, member.line)
        members.append(member)
    if len(sec.errors) > errors_before:
        return None
    if sticky and not seen_routes and discover is None:     # found members get routes of their own
        sec.error("sticky", f"balancer '{name}' has sticky '{sticky}' but no member has a 'route' "
                            "for sessions to stick to")
        return None
    return Balancer(name, tuple(members), method, sticky, line, sticky_insert=bool(sticky_insert),
                    sticky_param=sticky_param,
                    nofailover=bool(nofailover), failonstatus=failonstatus or (),
                    retry=60.0 if retry is None else retry, health=health, hash_key=hash_key or HashKey(),
                    discover=discover)


def _sticky(sec: Section) -> tuple[str | None, bool, str | None]:
    """stickysession=: a cookie (and URL parameter) name, or {cookie: NAME, insert: bool, param:
    NAME}: `param` names the URL parameter when it is not the cookie's name (Tomcat's
    `stickysession=JSESSIONID|jsessionid`: the cookie JSESSIONID, the path parameter
    `;jsessionid=`)."""
    node = sec.raw("sticky")
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return None, False, None
    if isinstance(node, Map):
        inner = Section(sec.errors, node, sec.name("sticky"), STICKY_KEYS)
        insert = inner.boolean("insert", False)
        name = inner.string("cookie") if inner.require("cookie") else None
        if name is not None and not TOKEN.match(name):
            inner.error("cookie", f"{inner.name('cookie')} '{name}' is not a valid cookie name")
        param = inner.string("param")
        if param is not None and not TOKEN.match(param):
            inner.error("param", f"{inner.name('param')} '{param}' is not a valid URL parameter name")
        return name, bool(insert), param if param != name else None
    name = sec.string("sticky")
    if name is not None and not TOKEN.match(name):
        sec.error("sticky", f"balancer sticky '{name}' is not a valid cookie or parameter name")
    return name, False, None


def _statuses(sec: Section, key: str) -> tuple[int, ...] | None:
    """failonstatus=: one status code or a list of them."""
    node = sec.raw(key)
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return ()
    items = node.items if isinstance(node, Seq) else [node]
    codes = []
    for item in items:
        value = item.value if isinstance(item, Scalar) else None
        if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
            sec.errors.add(item.line, f"{sec.name(key)} must be HTTP status codes (100 to 599), "
                                      f"got {describe(item)}")
            return None
        codes.append(value)
    return tuple(codes)


def _health(sec: Section) -> HealthCheck | None:
    """health: {method, path, expect, interval, passes, fails, timeout} (mod_proxy_hcheck)."""
    hc = sec.mapping("health", sec.name("health"), HEALTH_KEYS)
    if hc is None:
        return None
    d = HealthCheck()
    method = hc.string("method", d.method)
    if method is not None:
        method = method.upper()
        if method not in HEALTH_METHODS:
            hc.error("method", f"{hc.name('method')} must be one of {', '.join(HEALTH_METHODS)}; got '{method}'")
            method = None
    path = hc.string("path", d.path)
    if path is not None and (not path.startswith("/") or any(c.isspace() or not c.isascii() for c in path)):
        hc.error("path", f"{hc.name('path')} must start with '/' and be ASCII without spaces, got '{path}'")
    expect = None
    if "expect" in hc:
        text = hc.string("expect")
        if text is not None:
            try:
                expect = re.compile(text)
            except REGEX_ERRORS as exc:
                hc.error("expect", f"{hc.name('expect')} is not a valid regular expression: {exc}")
    if method == "TCP":
        for key in ("path", "expect"):
            if key in hc:
                hc.error(key, f"{hc.name(key)} only applies to GET, HEAD and OPTIONS checks (method is TCP)")
    interval = hc.number("interval", d.interval)
    timeout = hc.number("timeout", d.timeout)
    passes = hc.integer("passes", d.passes, 1, 100)
    fails = hc.integer("fails", d.fails, 1, 100)
    if None in (method, interval, timeout, passes, fails):
        return None
    return HealthCheck(method, path or d.path, expect, interval, passes, fails, timeout)


def _hash_key(sec: Section, method: str | None) -> HashKey | None:
    """hash_key: {source: client|header|cookie, name: ...}, for method: hash."""
    hk = sec.mapping("hash_key", sec.name("hash_key"), HASH_KEYS)
    if hk is None:
        return HashKey()
    if method is not None and method != "hash":
        sec.error("hash_key", f"{sec.name('hash_key')} only applies to method: hash (method is {method})")
        return None
    source = hk.choice("source", "client", HASH_SOURCES)
    name = hk.string("name")
    if source in ("header", "cookie"):
        if name is None:
            if "name" not in hk:
                hk.error(None, f"{hk.label} with source {source} needs a 'name'")
            return None
        if not TOKEN.match(name):
            hk.error("name", f"{hk.name('name')} '{name}' is not a valid {source} name")
            return None
    elif source == "client" and "name" in hk:
        hk.error("name", f"{hk.name('name')} only applies to source header or cookie")
        return None
    if source is None:
        return None
    return HashKey(source, name.lower() if source == "header" and name else name)


def _member(errors: Errors, item: Node, label: str, resolver: Resolver) -> Member | None:
    if not isinstance(item, Map):
        errors.add(item.line, f"{label} entries must be mappings with a 'url', got {describe(item)}")
        return None
    sec = Section(errors, item, label, MEMBER_KEYS)
    route = sec.string("route")
    if route is not None and not TOKEN.match(route):
        # It becomes a cookie value (`sticky: {insert: true}` writes it into Set-Cookie) and is
        # matched in URLs: a CR LF would split the response head, a `;` add cookie attributes.
        sec.error("route", f"{sec.name('route')} {route[:80]!r} must be a token (letters, digits and "
                           "!#$%&'*+-.^_`|~): it is written into the sticky cookie")
    weight = sec.integer("weight", 1, 1, 100)
    status = sec.choice("status", "enabled", MEMBER_STATUSES)
    max_connections = sec.integer("max_connections", 0, 0)
    if not sec.require("url"):
        return None
    text = sec.string("url")
    if text is None:
        return None
    try:
        url = parse_url(text, BACKEND_SCHEMES)
    except ValueError as exc:
        sec.error("url", f"{sec.name('url')}: {exc}")
        return None
    if url.path != "/":
        # Member has no path of its own: the route's balancer:// URL carries the path.
        sec.error("url", f"{sec.name('url')} '{text}' must not have a path; put it in the route's "
                         "balancer:// URL instead")
        return None
    backend = build_backend(sec, "url", url, resolver)
    if backend is None or None in (weight, status, max_connections):
        return None
    return Member(text, backend, route, weight, status, max_connections, item.line)
