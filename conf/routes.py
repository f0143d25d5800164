"""`routes:` and `balancers:` -> Route, Balancer, Member, Backend.

ProxyPass / ProxyPassMatch / RewriteCond / <Proxy balancer://> in YAML.  Regexes
are compiled from bytes here because workers match them against the raw request
path (bytes) and must not pay for decoding; every backend host is resolved here
because a worker loop must never wait on DNS.
"""

from __future__ import annotations

import re

from .addresses import (
    BACKEND_SCHEMES,
    BALANCER_NAME,
    DOLLAR_GROUP,
    TLS_SCHEMES,
    ParsedURL,
    Resolver,
    parse_url,
)
from .clients import origins, per_client, proxy_protocol_version
from .discover import DISCOVER_KEYS, build_discover
from .fields import Errors, Section, describe, did_you_mean
from .model import (
    BALANCER_METHODS,
    HASH_SOURCES,
    HEALTH_METHODS,
    MEMBER_STATUSES,
    UPGRADE_ANY,
    UPGRADE_NONE,
    Backend,
    BackendTLS,
    Balancer,
    HashKey,
    HeaderCondition,
    HealthCheck,
    Member,
    Route,
    Target,
)
from .tlsfiles import backend_tls
from .yamlnodes import Map, Node, Scalar, Seq

ROUTE_KEYS = ("path", "match", "to", "when", "upgrade", "reverse", "preserve_host", "timeout", "tls",
              "origins", "origins_required", "per_client", "proxy_protocol")
BALANCER_KEYS = ("method", "sticky", "members", "nofailover", "failonstatus", "retry", "health", "hash_key",
                 "discover")
HEALTH_KEYS = ("method", "path", "expect", "interval", "passes", "fails", "timeout")
HASH_KEYS = ("source", "name")
STICKY_KEYS = ("cookie", "insert")
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


# -- balancers --------------------------------------------------------------------------


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
    sticky, sticky_insert = _sticky(sec)
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
                    nofailover=bool(nofailover), failonstatus=failonstatus or (),
                    retry=60.0 if retry is None else retry, health=health, hash_key=hash_key or HashKey(),
                    discover=discover)


def _sticky(sec: Section) -> tuple[str | None, bool]:
    """stickysession=: a cookie (or URL parameter) name, or {cookie: NAME, insert: bool}."""
    node = sec.raw("sticky")
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return None, False
    if isinstance(node, Map):
        inner = Section(sec.errors, node, sec.name("sticky"), STICKY_KEYS)
        insert = inner.boolean("insert", False)
        name = inner.string("cookie") if inner.require("cookie") else None
        if name is not None and not TOKEN.match(name):
            inner.error("cookie", f"{inner.name('cookie')} '{name}' is not a valid cookie name")
        return name, bool(insert)
    name = sec.string("sticky")
    if name is not None and not TOKEN.match(name):
        sec.error("sticky", f"balancer sticky '{name}' is not a valid cookie or parameter name")
    return name, False


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
            except re.error as exc:
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


# -- routes -----------------------------------------------------------------------------


def build_routes(top: Section, balancers: dict[str, Balancer], declared: set[str],
                 resolver: Resolver) -> tuple[Route, ...]:
    """`declared`: every balancer name in the file, valid or not (an invalid one was reported already)."""
    routes = []
    for item in top.sequence("routes") or ():
        if not isinstance(item, Map):
            top.errors.add(item.line, f"each route must be a mapping (path/match, to, ...), got {describe(item)}")
            continue
        route = _route(Section(top.errors, item, "route", ROUTE_KEYS), balancers, declared, resolver)
        if route is not None:
            routes.append(route)
    _check_shadowed(top.errors, routes)
    return tuple(routes)


def _route(sec: Section, balancers: dict, declared: set[str], resolver: Resolver) -> Route | None:
    """The Route, or None if anything in it was wrong (the errors are recorded)."""
    errors_before = len(sec.errors)
    path = match = None
    if "path" in sec and "match" in sec:
        sec.error("match", "a route takes 'path' (a prefix) or 'match' (a regex), not both")
    elif "path" in sec:
        path = _prefix(sec)
    elif "match" in sec:
        match = _regex(sec, "match", 0)
    else:
        sec.error(None, "route needs 'path' (a prefix) or 'match' (a regex)")
    target = _target(sec, match, "match" in sec, balancers, declared, resolver)
    when = _conditions(sec)
    upgrade = _upgrade(sec)
    reverse = sec.boolean("reverse", False)
    preserve_host = sec.boolean("preserve_host", False)
    timeout = sec.number("timeout", None)
    allowed = origins(sec)
    origins_required = sec.boolean("origins_required", False)
    if origins_required and allowed is None and "origins" not in sec:
        sec.error("origins_required", "route.origins_required needs the route's 'origins' list")
    limits = per_client(sec, "per_client", route=True)
    if len(sec.errors) > errors_before:
        return None
    return Route(target, path, match, when, upgrade, reverse, preserve_host, timeout, sec.node.line,
                 allowed, bool(origins_required), limits)


def _prefix(sec: Section) -> bytes | None:
    text = sec.string("path")
    if text is None:
        return None
    if not text.startswith("/"):
        sec.error("path", f"route.path must start with '/', got '{text}'")
        return None
    if any(c.isspace() or not c.isascii() for c in text):
        # Requests arrive percent-encoded; a raw non-ASCII prefix could never match one.
        sec.error("path", f"route.path '{text}' must be ASCII without spaces (percent-encode other characters)")
        return None
    return text.encode("ascii")


def _regex(sec: Section, key: str, flags: int) -> re.Pattern | None:
    text = sec.string(key)
    if text is None:
        return None
    try:
        return re.compile(text.encode(), flags)
    except re.error as exc:
        sec.error(key, f"{sec.name(key)} is not a valid regular expression: {exc}")
        return None


def _target(sec: Section, match: re.Pattern | None, has_match: bool, balancers: dict,
            declared: set[str], resolver: Resolver) -> Target | None:
    if not sec.require("to"):
        return None
    text = sec.string("to")
    if text is None:
        return None
    try:
        url = parse_url(text)
    except ValueError as exc:
        sec.error("to", f"route.to: {exc}")
        return None
    groups = [int(n) for n in DOLLAR_GROUP.findall(url.path)]
    if groups and not has_match:
        sec.error("to", f"route.to uses ${groups[0]}, but only a 'match' route has groups to substitute")
        return None
    if match is not None:
        for n in groups:
            if n > match.groups:
                plural = "group" if match.groups == 1 else "groups"
                sec.error("to", f"route.to uses ${n} but the match has {match.groups} {plural}")
                return None
    if url.scheme == "balancer":
        for key in ("tls", "proxy_protocol"):
            if key in sec:
                sec.error(key, f"route.{key} does not apply to a balancer:// target; set {key} on its members")
        if url.host not in balancers:
            if url.host not in declared:   # declared but invalid: already reported at its definition
                sec.error("to", f"unknown balancer '{url.host}'{did_you_mean(url.host, declared)}")
            return None
        return Target(text, None, url.path, url.host)
    backend = build_backend(sec, "to", url, resolver)
    return Target(text, backend, url.path) if backend is not None else None


def _conditions(sec: Section) -> tuple[HeaderCondition, ...] | None:
    """when: {header: {Upgrade: websocket}} -> RewriteCond %{HTTP:Upgrade} websocket [NC]."""
    when = sec.mapping("when", "route.when", ("header",))
    if when is None:
        return None if "when" in sec else ()
    headers = when.mapping("header", "route.when.header", None)
    if headers is None:
        return None if "header" in when else ()
    conditions, ok = [], True
    for name, _entry in headers.entries():
        if not TOKEN.match(name):
            headers.error(name, f"'{name}' is not a valid header name")
            ok = False
            continue
        pattern = _regex(headers, name, re.IGNORECASE)
        if pattern is None:
            ok = False
            continue
        conditions.append(HeaderCondition(name.lower().encode("ascii"), pattern))
    return tuple(conditions) if ok else None


def _upgrade(sec: Section) -> frozenset[str] | str | None:
    """upgrade=: 'websocket', 'ANY', 'NONE', a name, 'a,b', or a list of names."""
    node = sec.raw("upgrade")
    if node is None:
        return frozenset({"websocket"})
    if isinstance(node, Scalar) and isinstance(node.value, str):
        names = [n.strip() for n in node.value.split(",")]
    elif isinstance(node, Seq) and all(isinstance(i, Scalar) and isinstance(i.value, str) for i in node.items):
        names = [i.value.strip() for i in node.items]
    else:
        sec.error("upgrade", f"route.upgrade must be websocket, ANY, NONE or a list of protocol names, "
                             f"got {describe(node)}")
        return None
    special = [n.upper() for n in names if n.upper() in (UPGRADE_ANY, UPGRADE_NONE)]
    if special:
        if len(names) > 1:
            sec.error("upgrade", f"route.upgrade {special[0]} cannot be combined with other protocol names")
            return None
        return special[0]
    bad = [n for n in names if not TOKEN.match(n)]
    if bad:
        sec.error("upgrade", f"route.upgrade: '{bad[0]}' is not a valid protocol name")
        return None
    return frozenset(n.lower() for n in names)


def _check_shadowed(errors: Errors, routes: list[Route]) -> None:
    """A prefix route after an unconditional prefix route that covers it can never match.

    Order matters exactly as with Apache's ProxyPass (first match wins); this is the
    classic mistake of putting `ProxyPass /` before `ProxyPass /ws/`.
    """
    for i, later in enumerate(routes):
        if later.path is None:
            continue
        for earlier in routes[:i]:
            if earlier.path is None or earlier.when:
                continue
            if later.path == earlier.path or (later.path.startswith(earlier.path) and earlier.path.endswith(b"/")):
                errors.add(later.line, f"route for '{later.name}' is never used: the route at line {earlier.line} "
                                       f"(path '{earlier.name}') comes first and matches all its requests")
                break
