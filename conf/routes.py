"""`routes:` -> Route (ProxyPass / ProxyPassMatch / RewriteCond in YAML).

Regexes are compiled from bytes here because workers match them against the raw request path
(bytes) and must not pay for decoding; a route's backend is built (and its host resolved) by
`conf.balancers.build_backend`.
"""

from __future__ import annotations

import re

import regex

from .addresses import (
    DOLLAR_GROUP,
    Resolver,
    parse_url,
)
from .balancers import TOKEN, build_backend
from .clients import origins, per_client
from .fields import REGEX_ERRORS, Errors, Section, describe, did_you_mean
from .model import (
    UPGRADE_ANY,
    UPGRADE_NONE,
    Balancer,
    HeaderCondition,
    Route,
    Target,
)
from .yamlnodes import Map, Scalar, Seq

# A segment "." or ".." (also percent-encoded) followed by more path, or a fragment mark.
_NEVER_REQUESTED = re.compile(r"(?:^|/)(?:\.|%2e){1,2}/|#", re.IGNORECASE)
ROUTE_KEYS = ("path", "match", "to", "when", "upgrade", "reverse", "preserve_host", "timeout", "tls",
              "origins", "origins_required", "per_client", "proxy_protocol")


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
    if _NEVER_REQUESTED.search(text):
        # worker.routing.refused_target answers such requests 400 before any route.
        sec.error("path", f"route.path '{text}' can never match: a request with a '.' or '..' segment or a '#' "
                          "is refused (400)")
        return None
    return text.encode("ascii")


def _regex(sec: Section, key: str, flags: int) -> regex.Pattern | None:
    """An operator's pattern, compiled by the `regex` module, whose syntax is `re`'s with POSIX
    classes read as PCRE (so httpd) reads them: the workers search with it, under a time
    limit (worker.regexlimit), so what configtest accepts is what routes.  (Compiled by `re`
    here and by `regex` there, the two read `[[:alpha:]]`, `{e<=1}` and a few more otherwise:
    reviews 2026-12-04-readme F1 and -fixes #4-#6.)"""
    text = sec.string(key)
    if text is None:
        return None
    try:
        return regex.compile(text.encode(), flags)
    except REGEX_ERRORS + (regex.error,) as exc:
        sec.error(key, f"{sec.name(key)} is not a valid regular expression: {exc}")
        return None


def _target(sec: Section, match: regex.Pattern | None, has_match: bool, balancers: dict,
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
        pattern = _regex(headers, name, regex.IGNORECASE)
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
    """A route after an unconditional one that takes all its requests can never match.

    Order matters exactly as with Apache's ProxyPass (first match wins); this is the
    classic mistake of putting `ProxyPass /` before `ProxyPass /ws/`.  Workers match a
    `path` as a byte prefix, so any earlier prefix of it shadows it ("/api" takes
    "/api/v2/x"), and an earlier `match` with the same pattern shadows a later one.
    Looked up by each path's own prefixes, not against every earlier route: 6,000 routes
    took 2.5 s pairwise (review 2026-12-04-conf #2)."""
    prefixes: dict[bytes, Route] = {}       # unconditional prefix routes so far, the first of each path
    patterns: dict[bytes, Route] = {}       # unconditional regex routes so far, by pattern
    for later in routes:
        if later.path is not None:
            key, table = later.path, prefixes
            covering = [prefixes[key[:end]] for end in range(1, len(key) + 1) if key[:end] in prefixes]
            earlier = min(covering, key=lambda route: route.line) if covering else None
        else:
            key, table = later.match.pattern, patterns
            earlier = patterns.get(key)
        if earlier is not None:
            how = f"path '{earlier.name}'" if earlier.path is not None else "the same match"
            errors.add(later.line, f"route for '{later.name}' is never used: the route at line {earlier.line} "
                                   f"({how}) comes first and matches all its requests")
        elif not later.when:
            table.setdefault(key, later)
