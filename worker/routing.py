"""Routes, first match wins: ProxyPass prefixes, ProxyPassMatch regexes, RewriteCond guards.

The request target is mapped byte for byte: the part after a ProxyPass prefix is
appended to the target's path untouched (no decoding, no re-encoding), and a
ProxyPassMatch template has its `$N` replaced by the raw groups of the match against
the raw path, with the query string carried over unless the template has its own.
"""

from __future__ import annotations

import re

from conf.model import Route

_DOLLAR = re.compile(r"\$(\d)")


def _compile_template(path: str) -> tuple:
    """"/x/$1/y" -> (b"/x/", 1, b"/y"): literals and group numbers, in order."""
    parts: list = []
    pos = 0
    for m in _DOLLAR.finditer(path):
        parts.append(path[pos:m.start()].encode("latin-1"))
        parts.append(int(m.group(1)))
        pos = m.end()
    parts.append(path[pos:].encode("latin-1"))
    return tuple(p for p in parts if p != b"")


class CompiledRoute:
    __slots__ = ("route", "prefix", "prefix_len", "base", "identity", "regex", "template",
                 "when", "timeout", "upgrade", "name")

    def __init__(self, route: Route, default_timeout: float):
        self.route = route
        self.prefix = route.path
        self.prefix_len = len(route.path or b"")
        self.base = route.target.path.encode("latin-1")
        self.identity = route.path is not None and self.base == route.path
        self.regex = route.match
        self.template = _compile_template(route.target.path) if route.match is not None else ()
        self.when = route.when
        self.timeout = route.timeout if route.timeout is not None else default_timeout
        self.upgrade = route.upgrade
        self.name = route.name

    def map(self, target: bytes, head) -> bytes | None:
        """The backend's request target for `target`, or None when this route does not apply."""
        for condition in self.when:
            value = head.get(condition.name)
            if value is None or condition.pattern.search(value) is None:
                return None
        if self.regex is None:
            if not target.startswith(self.prefix):
                return None
            if self.identity:
                return target
            return self.base + target[self.prefix_len:]
        path, sep, query = target.partition(b"?")
        m = self.regex.search(path)
        if m is None:
            return None
        mapped = b"".join(p if p.__class__ is bytes else (m.group(p) or b"") for p in self.template)
        if sep and b"?" not in mapped:
            mapped += b"?" + query
        return mapped or b"/"


_DOT_SEGMENT = re.compile(rb"(?:^|/)(?:\.|%2e){1,2}(?:/|$)", re.IGNORECASE)


def has_dot_segment(target: bytes) -> bool:
    """"/a/../b", "/a/./b", "/a/%2e%2E/b": a route prefix would not bind what the backend
    resolves, and we pass targets byte for byte, so such requests are refused (400)."""
    path = target.split(b"?", 1)[0]
    return (b"/." in path or b"%2" in path) and _DOT_SEGMENT.search(path) is not None


class Router:
    def __init__(self, routes, default_timeout: float):
        self.routes = tuple(CompiledRoute(route, default_timeout) for route in routes)

    def resolve(self, target: bytes, head):
        """(CompiledRoute, backend target) for the first route that matches, else (None, None)."""
        for compiled in self.routes:
            mapped = compiled.map(target, head)
            if mapped is not None:
                return compiled, mapped
        return None, None
