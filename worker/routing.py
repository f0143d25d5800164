"""Routes, first match wins: ProxyPass prefixes, ProxyPassMatch regexes, RewriteCond guards.

The request target is mapped byte for byte: the part after a ProxyPass prefix is
appended to the target's path untouched (no decoding, no re-encoding), and a
ProxyPassMatch template has its `$N` replaced by the raw groups of the match against
the raw path, with the query string carried over unless the template has its own.

Everything about a route that does not depend on the request is decided when the
worker starts (`CompiledRoute`): the backend's precomputed `Origin`, the upgrade
policy, the prefix lengths.
"""

from __future__ import annotations

import re

from conf.addresses import compile_template
from conf.model import UPGRADE_ANY, UPGRADE_NONE, Route
from worker.http1 import connection_tokens


class CompiledRoute:
    __slots__ = ("prefix", "prefix_len", "base", "identity", "regex", "template", "when", "timeout",
                 "upgrade", "any_protocol", "always_upgrade", "name", "log_name", "origin", "balancer",
                 "preserve_host", "reverse")

    def __init__(self, route: Route, default_timeout: float, origins):
        self.prefix = route.path
        self.prefix_len = len(route.path or b"")
        self.base = route.target.path.encode("latin-1")
        self.identity = route.path is not None and self.base == route.path
        self.regex = route.match
        self.template = compile_template(route.target.path) if route.match is not None else ()
        self.when = route.when
        self.timeout = route.timeout if route.timeout is not None else default_timeout
        self.upgrade = route.upgrade
        # Compared by value: conf builds these strings (`.upper()`), so `is` would not hold.
        self.always_upgrade = route.upgrade == UPGRADE_NONE
        self.any_protocol = route.upgrade == UPGRADE_ANY or self.always_upgrade
        self.name = route.name
        self.log_name = route.name.encode("utf-8", "backslashreplace")
        target = route.target
        self.origin = origins(target.backend) if target.backend is not None else None
        self.balancer = target.balancer
        self.preserve_host = route.preserve_host
        self.reverse = route.reverse

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

    def upgrade_header(self, head) -> bytes | None:
        """The Upgrade header to send to the backend, or None to forward as plain HTTP.
        A request with a body, or an HTTP/1.0 one, is never upgraded."""
        asked = head.upgrade
        if self.always_upgrade:
            return None if head.has_body or head.version != "1.1" else (asked or b"websocket")
        if asked is None:
            return None
        if self.any_protocol:
            return asked
        for token in connection_tokens(asked):
            if token.split(b"/", 1)[0].decode("latin-1") in self.upgrade:
                return asked
        return None


_DOT_SEGMENT = re.compile(rb"(?:^|/)(?:\.|%2e){1,2}(?:/|$)", re.IGNORECASE)


def has_dot_segment(target: bytes) -> bool:
    """"/a/../b", "/a/./b", "/a/%2e%2E/b": a route prefix would not bind what the backend
    resolves, and we pass targets byte for byte, so such requests are refused (400)."""
    # (find, not `in`: bytes.__contains__ first tries the argument as an int and pays for
    # the exception it raises.)
    if target.find(b"/.") < 0 and target.find(b"%2") < 0:
        return False
    return _DOT_SEGMENT.search(target.split(b"?", 1)[0]) is not None


def origin_form(target: bytes) -> bytes | None:
    """absolute-form "http://host/path?q" -> "/path?q" (RFC 9112 §3.2.2)."""
    lower = target[:8].lower()
    if not (lower.startswith(b"http://") or lower.startswith(b"https://")):
        return None
    slash = target.find(b"/", target.find(b"//") + 2)
    return target[slash:] if slash >= 0 else b"/"


class Router:
    def __init__(self, routes, default_timeout: float, origins):
        self.routes = tuple(CompiledRoute(route, default_timeout, origins) for route in routes)

    def resolve(self, target: bytes, head):
        """(CompiledRoute, backend target) for the first route that matches, else (None, None)."""
        for compiled in self.routes:
            mapped = compiled.map(target, head)
            if mapped is not None:
                return compiled, mapped
        return None, None
