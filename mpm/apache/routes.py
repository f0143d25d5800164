"""Route candidates in httpd's order of evaluation -> mpm-proxy `routes:` entries.

The translators (proxypass.py, rewrite.py) produce RouteSpecs in the order httpd tries
them for one server: mod_rewrite's [P] rules, then the <Location> ProxyPass (the last
matching <Location> wins, so they come in reverse file order), then the server's ProxyPass
list.  Here each becomes a `path:` route when a plain byte prefix means the same thing,
else a `match:` pattern, and a `!` exclusion becomes a lookahead on every later route of
that server (mpm-proxy answers 404 when no route matches, which is what httpd does for a
path it does not proxy and has no file for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from . import patterns
from .reader import Directive

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(.*)$")


@dataclass
class RouteSpec:
    sources: list[Directive]                 # the directive it comes from first, then e.g. its RewriteConds
    prefix: str | None = None                # ProxyPass path (httpd's alias_match: whole segments)
    pattern: str | None = None               # searched regex, Python syntax (ProxyPassMatch, RewriteRule)
    nocase: bool = False                     # [NC] on the pattern
    to: str = ""                             # prefix: the URL the rest of the path is appended to;
                                             # pattern: a template with $N
    exclusion: bool = False                  # ProxyPass ... ! : no route; later ones skip its paths
    exact: bool = False                      # prefix: only the prefix itself reaches `to`, and later
                                             # routes skip the rest of it (proxypass.PassTranslator._no_path)
    when: dict[str, list[str]] = field(default_factory=dict)   # header -> patterns, all must match
    options: dict = field(default_factory=dict)                # upgrade, reverse, preserve_host, timeout, tls
    comments: list[str] = field(default_factory=list)          # why it looks the way it does


@dataclass
class Emitted:
    comments: list[str]
    route: dict | None       # None: a comment-only entry (an exclusion)


def split_url(url: str) -> tuple[str, str, str] | None:
    """('http', 'host:port', '/path') or None when `url` is not scheme://authority..."""
    m = _URL.match(url)
    return (m.group(1).lower(), m.group(2), m.group(3)) if m else None


def finalize(specs: list[RouteSpec], host: str | None) -> list[Emitted]:
    """mpm-proxy routes for one server's specs; `host`: a Host condition for all of them."""
    out, guards = [], []
    for spec in specs:
        comments = [f"{d.where}  {d.text()}" for d in spec.sources] + spec.comments
        if spec.exclusion:
            guards.append(patterns.exclusion_guard(spec.prefix, spec.pattern, spec.nocase))
            out.append(Emitted(comments + ["(no route: the routes below skip these paths, which get 404 here)"],
                               None))
            continue
        route = _prefix_route(spec, guards) if spec.prefix is not None else _pattern_route(spec, guards)
        when = {name: _all_of(values) for name, values in spec.when.items()}
        if host is not None:
            when["Host"] = _all_of([host] + spec.when.get("Host", []))
        if when:
            route["when"] = {"header": when}
        route["to"] = route.pop("to")
        route.update(spec.options)
        out.append(Emitted(comments, route))
        if spec.exact and not spec.when:
            guards.append(patterns.prefix_guard(spec.prefix))     # httpd tries no later rule for them
    return out


def _all_of(values: list[str]) -> str:
    if len(values) == 1:
        return values[0]
    return "".join(f"(?=.*?{patterns.scoped(v, None)})" for v in values)


def _encoded(text: str) -> str:
    """A path as it travels (httpd compares and builds decoded paths, mpm-proxy raw ones).
    A byte that is not UTF-8 (a Latin-1 config; the reader keeps it as a surrogate) goes
    as itself, percent-encoded: httpd is byte-oriented."""
    return quote(text.encode("utf-8", "surrogateescape"), safe="/%:@!$&'()*+,;=-._~")


def _prefix_route(spec: RouteSpec, guards: list[str]) -> dict:
    """ProxyPass fake -> real: httpd sends `real + rest of the path`."""
    fake = _encoded(spec.prefix)
    scheme, authority, path = split_url(spec.to)
    path = _encoded(path)
    real = f"{scheme}://{authority}{path}"
    if not guards and (fake.endswith("/") or fake == "/") and path:
        return {"path": fake, "to": real}
    base = f"{scheme}://{authority}"
    if spec.exact:
        body = f"{patterns.literal(fake)}$"
        spec.comments.append(f"(only {fake} itself: httpd appends the rest of the path to the URL's authority, "
                             "a 500; the routes below skip it, 404 here)")
        return {"match": patterns.guarded(guards, "^" + body) if not guards else patterns.guarded(guards, body),
                "to": f"{base}/"}
    if fake.endswith("/"):
        body = f"{patterns.literal(fake)}(.*)"
        to = f"{real}$1" if path else f"{base}/$1"
    elif path:
        body = f"{patterns.literal(fake)}((?:/.*)?)$"
        to = f"{real}$1"
    else:          # no path in the URL: the rest of the path starts with '/' or is empty
        body = f"{patterns.literal(fake)}(?:/(.*))?$"
        to = f"{base}/$1"
    if not guards:
        spec.comments.append(f"(a pattern: httpd's ProxyPass {fake} matches {fake} and {fake}/..., "
                             f"not {fake}x)" if not fake.endswith("/") else
                             "(a pattern: the URL has no path, so httpd appends the rest of the path as it is)")
    return {"match": patterns.guarded(guards, "^" + body) if not guards else patterns.guarded(guards, body),
            "to": to}


def _pattern_route(spec: RouteSpec, guards: list[str]) -> dict:
    if not guards:
        pattern = (spec.pattern or "^") if not spec.nocase else f"(?i){spec.pattern}"   # "": every path
        flags, body = patterns.split_flags(pattern)
        return {"match": f"(?{flags}){body}" if flags else body, "to": spec.to}
    return {"match": patterns.guarded(guards, patterns.search_anywhere(spec.pattern, spec.nocase)), "to": spec.to}


def host_pattern(names: list[str]) -> str:
    """The Host header values httpd's name-based virtual host matching sends to these names."""
    alts = []
    for name in names:
        alts.append("".join(".*" if c == "*" else "." if c == "?" else patterns.literal(c) for c in name))
    return f"^(?:{'|'.join(alts)})\\.?(?::[0-9]+)?$"


def not_host_pattern(names: list[str]) -> str:
    return f"^(?!{host_pattern(names)[1:]})"


def drop_shadowed(emitted: list[Emitted], report) -> list[Emitted]:
    """A route after an unconditional one that takes all its requests never matches (httpd never
    reaches such a ProxyPass either: a virtual host's own comes after the main server's, and the
    same path proxied twice is served by the first); mpm-proxy's configtest refuses it
    (conf.routes._check_shadowed: an earlier prefix of its `path`, or the same `match`), so it
    goes, with a note."""
    out: list[Emitted] = []
    paths: list[tuple[str, Emitted]] = []       # unconditional routes so far, by path ...
    matches: dict[str, Emitted] = {}            # ... and by pattern
    for e in emitted:
        route = e.route or {}
        path, match = route.get("path"), route.get("match")
        if path is not None:
            cover = next((c for p, c in paths if path.startswith(p)), None)
        else:
            cover = matches.get(match) if match is not None else None
        if cover is None:
            if "when" not in route and path is not None:
                paths.append((path, e))
            elif "when" not in route and match is not None:
                matches.setdefault(match, e)
            out.append(e)
            continue
        where, text = _split(e.comments[0])
        cover_where, cover_text = _split(cover.comments[0])
        why = f"never used: {cover_text} at {cover_where} takes all its requests first, as in httpd"
        if text.startswith("<Location") and cover_text.startswith("<Location"):
            why += " (the last matching <Location> wins: put the more general section first)"
        report.dropped(where, text, why)
    return out


def _split(comment: str) -> tuple[str, str]:
    where, _, text = comment.partition("  ")
    return where, text
