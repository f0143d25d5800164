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
from conf.clients import normalise_origin
from conf.model import UPGRADE_ANY, UPGRADE_NONE, Route
from worker.authority import absolute_form
from worker.limits import scope_of
from worker.logs import log_field
from worker.regexlimit import RegexTimeout, bounded_search


class CompiledRoute:
    __slots__ = ("prefix", "prefix_len", "base", "identity", "regex", "regex_search", "template", "when", "timeout",
                 "upgrade", "any_protocol", "always_upgrade", "name", "log_name", "origin", "balancer",
                 "preserve_host", "reverse", "per_client", "scope", "origin_policy", "line", "lane_log")

    def __init__(self, route: Route, default_timeout: float, origins):
        # Matched against normalised targets (routed_target): "/%7Euser/" as written would never match.
        self.prefix = normal_path(route.path) if route.path is not None else None
        self.prefix_len = len(self.prefix or b"")
        self.base = route.target.path.encode("latin-1")
        self.identity = route.path is not None and self.base == route.path
        self.regex = route.match
        self.regex_search = bounded_search(route.match) if route.match is not None else None
        self.template = compile_template(route.target.path) if route.match is not None else ()
        self.when = tuple((condition.name, bounded_search(condition.pattern)) for condition in route.when)
        self.timeout = route.timeout if route.timeout is not None else default_timeout
        self.upgrade = route.upgrade
        # Compared by value: conf builds these strings (`.upper()`), so `is` would not hold.
        self.always_upgrade = route.upgrade == UPGRADE_NONE
        self.any_protocol = route.upgrade == UPGRADE_ANY or self.always_upgrade
        self.name = route.name
        self.line = route.line
        # Escaped once here, as the client's fields are per line (worker.logs): a pattern may
        # hold a quote or a backslash, which would end the quoted field early.
        self.log_name = log_field(route.name.encode("utf-8", "backslashreplace"))
        target = route.target
        self.origin = origins(target.backend) if target.backend is not None else None
        # The route and backend fields of the access-log lines the lane writes (worker/_lane_log.c).
        self.lane_log = b'"%s" "%s" ' % (self.log_name, self.origin.log_name) if self.origin is not None else None
        self.balancer = target.balancer
        self.preserve_host = route.preserve_host
        self.reverse = route.reverse
        self.per_client = route.per_client if route.per_client is not None and route.per_client.any else None
        self.scope = scope_of(self.name)
        self.origin_policy = OriginPolicy(route.origins, route.origins_required) \
            if route.origins is not None or route.origins_required else None

    def refuse_origin(self, head) -> str | None:
        """Why an upgrade is refused under the route's Origin policy (403), or None."""
        return self.origin_policy.refuse(head)

    def map(self, target: bytes, head) -> bytes | None:
        """The backend's request target for `target`, or None when this route does not apply;
        RegexTimeout when one of its searches ran past worker.regexlimit.LIMIT.  The path is
        tested first: a `when:` search costs far more than a prefix test."""
        try:
            if self.regex is None:
                if not target.startswith(self.prefix):
                    return None
                mapped = target if self.identity else self.base + target[self.prefix_len:]
            else:
                mapped = self._map_regex(target)
                if mapped is None:
                    return None
            for name, search in self.when:
                # Every line of the field, joined (RFC 9110 §5.3), as httpd merges them before
                # %{HTTP:name} is read: with the first alone, a harmless first copy would decide
                # a negated condition.  A field the request lacks reads as "", as %{HTTP:name}
                # does: `websocket` does not match it, "none of these hosts" (a negated
                # condition: the default virtual host of an import) does.
                if search(b", ".join(head.values(name))) is None:
                    return None
            return mapped
        except TimeoutError:
            raise RegexTimeout(self) from None

    def _map_regex(self, target: bytes) -> bytes | None:
        path, sep, query = target.partition(b"?")
        m = self.regex_search(path)
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
        # Only the protocols the route allows go on, so the backend cannot switch to another
        # one the client listed beside them ("websocket, h2c" on a WebSocket route would tunnel
        # h2c, past routing, limits and the log: review 2026-12-03-http1 #1).  Apache drops the
        # whole header unless all of it is allowed; keeping the allowed part serves the same
        # clients and one more.
        kept = [token.strip(b" \t") for token in asked.split(b",")
                if token.strip(b" \t").lower().split(b"/", 1)[0].decode("latin-1") in self.upgrade]
        return b", ".join(kept) if kept else None


class OriginPolicy:
    """A route's WebSocket Origin allow-list (Cross-Site WebSocket Hijacking): a browser
    always sends Origin with a WebSocket handshake and a page cannot forge it, so an upgrade
    from a page of a listed origin passes and one from any other page gets 403 before it
    reaches the backend.  Non-browser clients send no Origin: they pass unless `required`.
    Origins compare normalised (lower case, default port dropped); "https://*.example.com"
    matches any name under example.com, not example.com itself, over https on port 443."""

    __slots__ = ("exact", "patterns", "required")

    def __init__(self, origins, required: bool):
        origins = origins or ()
        self.exact = frozenset(origin for origin in origins if "://*." not in origin)
        self.patterns = tuple(re.compile(re.escape(origin.split("*.", 1)[0]) + r"[a-z0-9_~-][a-z0-9._~-]*\."
                                         + re.escape(origin.split("*.", 1)[1]) + r"\Z")
                              for origin in origins if "://*." in origin)
        self.required = required

    def refuse(self, head) -> str | None:
        values = head.values(b"origin")
        if not values:
            return "an Origin header is required for this upgrade" if self.required else None
        if len(values) > 1:
            return "more than one Origin header"
        try:
            origin = normalise_origin(values[0].decode("ascii"))
        except UnicodeDecodeError:
            origin = None
        if origin is not None and (origin in self.exact or any(p.match(origin) for p in self.patterns)):
            return None
        return f"Origin {values[0][:100].decode('latin-1')!r} is not allowed here"


# A dot segment as some backend resolves it: "." or ".." (or "%2e" for either dot) alone between
# separators, where a separator is "/" and also what servers behind us may take for one: "\\"
# (Windows servers, some servlet containers), "%2f" and "%5c" (servers that decode before they
# resolve), and after the dots ";" (Tomcat drops a segment's path parameters: "/..;/" is "/../").
# "/a..b", "/..foo", "/..." and "%2F" in a query string are none.
_DOT_SEGMENT = re.compile(rb"(?:^|/|\\|%2f|%5c)(?:\.|%2e){1,2}(?:$|[/\\;]|%2f|%5c)", re.IGNORECASE)
_RARE_IN_TARGETS = b"%\\#"        # what an ordinary target lacks, and every refused one has (or "/.")
# A table that changes exactly those bytes: CPython's bytes.translate hands back its input
# itself when the table changed nothing, so `target.translate(_RARE_MARK) is target` says
# "none of them" in one C loop with no allocation (45-60 ns; translate(None, _RARE_IN_TARGETS)
# built a deletion table per call, 107-140 ns).  Where `is` fails for another reason, the
# slow path below is right for an ordinary target too.
_RARE_MARK = bytes((c + 1) % 256 if c in _RARE_IN_TARGETS else c for c in range(256))


def refused_target(target: bytes) -> str | None:
    """Why a request target is refused (400), or None.  A route prefix binds the target's bytes
    and we pass them on untouched, so a target the backend would resolve elsewhere is refused:
    dot segments ("/static/../admin", "/static/..;/admin", "/static/..%2fadmin"; Apache refuses
    %2f itself by default, AllowEncodedSlashes Off), and a fragment, which no request target has
    (RFC 9112 §3.2; Apache's strict request line refuses it too): a regex route would match
    "/admin#.css" that the backend serves as "/admin"."""
    # One find and one translate pass an ordinary target: every refused one holds "/." or a
    # rare byte (_RARE_MARK).  (find, not `in`: bytes.__contains__ first tries the argument as
    # an int and pays for the exception.)
    if target.find(b"/.") < 0 and target.translate(_RARE_MARK) is target:
        return None
    if target.find(b"#") >= 0:
        return "a fragment (#) in the request target"
    if _DOT_SEGMENT.search(target.split(b"?", 1)[0]) is not None:
        return "dot-segments in the request path"
    return None


# RFC 3986 §6.2.2.2: "%6C" is "l" (ALPHA, DIGIT and "-._~" are unreserved: their escapes are
# never needed, and mean the character itself to every server).  And "%2F", "/": reserved, but
# every WSGI, Rack or Go server decodes it into the path it routes ("/admin%2Fusers" is its
# /admin/users), so it counts as "/" when a route is chosen, as nginx matches locations (Apache
# answers 404, AllowEncodedSlashes Off): review 2026-12-04-differential #1.
_ROUTING_ESCAPE = re.compile(rb"%(?:[46][1-9a-f]|[57][0-9a]|3[0-9]|2[def]|5f|7e)", re.IGNORECASE)
_SLASHES = re.compile(rb"//+")


def _unescaped(m) -> bytes:
    return bytes((int(m[0][1:], 16),))


def routed_target(target: bytes) -> bytes | str:
    """`target` itself when it routes as it is; else why it is refused (a str: 400), or its
    normalised form (`normal_path`), which `Router.resolve_normalised` weighs against it.
    The usual target has no "%", "//" or "/.": one find more than `refused_target`'s fast path."""
    if target.find(b"/.") < 0 and target.find(b"//") < 0 and target.translate(_RARE_MARK) is target:
        return target
    refused = refused_target(target)
    if refused is not None:
        return refused
    return normal_path(target)


def normal_path(target: bytes) -> bytes:
    """`target` with its path (not its query) as nginx matches locations: escapes of unreserved
    characters and of "/" decoded (_ROUTING_ESCAPE), runs of "/" merged (merge_slashes,
    Apache's MergeSlashes)."""
    path, sep, query = target.partition(b"?")
    if path.find(b"%") >= 0:
        path = _ROUTING_ESCAPE.sub(_unescaped, path)
    if path.find(b"//") >= 0:
        path = _SLASHES.sub(b"/", path)
    return path + sep + query


def origin_form(target: bytes) -> bytes | None:
    """absolute-form "http://host/path?q" -> "/path?q" (RFC 9112 §3.2.2; its authority is the
    head's Host already: worker.http1)."""
    found = absolute_form(target)
    return found[1] if found is not None else None


MEMO_MAX = 1024            # targets `Router.remember` keeps
MEMO_TARGET_MAX = 512      # bytes of the longest target it keeps


class Router:
    def __init__(self, routes, default_timeout: float, origins):
        self.routes = tuple(CompiledRoute(route, default_timeout, origins) for route in routes)
        # Whether a target alone decides the route (no `when:` reads a field): worker.lane then
        # routes a connection's repeated target once, and `remembered` answers for the worker.
        self.by_target = not any(route.when for route in self.routes)
        self.remembered: dict = {}

    def remember(self, target: bytes, resolved: tuple) -> None:
        """What `resolve` answered for `target` (one that routes as it is: `routed_target`), kept
        in `remembered` while a target alone decides the route.  A client that opens a connection
        per request sends the same few targets on every new one, whose first request (worker.lane)
        then skips the search: 2,661 -> 2,568 bytecodes per resumed TLS connection (bench.bytecodes).
        Bounded: a flood of distinct targets starts it over, and a long one is not kept."""
        if self.by_target and len(target) <= MEMO_TARGET_MAX:
            remembered = self.remembered
            if len(remembered) >= MEMO_MAX:
                remembered.clear()
            remembered[target] = resolved

    def resolve(self, target: bytes, head):
        """(CompiledRoute, backend target) for the first route that matches, else (None, None).
        Raises RegexTimeout when the routes' regular expressions take too long on this request."""
        for compiled in self.routes:
            mapped = compiled.map(target, head)
            if mapped is not None:
                return compiled, mapped
        return None, None

    def resolve_normalised(self, target: bytes, normal: bytes, head):
        """`resolve` for a target that `normal` (its `normal_path`) may route elsewhere (review
        2026-12-03-rewrite #2): "/%6cogin" and "//login" would miss the /login route and its
        limits and reach a later one, whose backend reads them as /login all the same.  The route
        of the normalised form wins, as in nginx and Apache; when both meet the same route, the
        target goes on byte for byte."""
        route, mapped = self.resolve(target, head)
        if normal == target:
            return route, mapped
        other, other_mapped = self.resolve(normal, head)
        return (route, mapped) if other is route else (other, other_mapped)
