"""ProxyPass / ProxyPassMatch (server level and in <Location>) -> RouteSpecs.

httpd's proxy_trans (modules/proxy/mod_proxy.c) decides in this order:
1. the ProxyPass of the request's <Location>: sections merge in file order and a later one
   replaces an earlier one's ProxyPass, so the *last* matching <Location> with a ProxyPass
   is the one tried.  Its `!` stops everything (the server-level rules are not tried);
   a path its ProxyPass does not match goes on to step 2;
2. the server's ProxyPass/ProxyPassMatch rules in file order (the main server's first,
   then the virtual host's), first match wins, `!` stops.
The worker parameters (`timeout=`, `upgrade=`, ...) belong to the worker, which the first
ProxyPass for a URL defines and later ones whose URL starts with it share.
"""

from __future__ import annotations

from dataclasses import dataclass

from conf.fields import did_you_mean

from . import patterns
from .context import Context, Worker, seconds, whole_seconds
from .reader import Directive
from .routes import RouteSpec, split_url
from .scope import Scope

SCHEMES = ("http", "https", "ws", "wss", "balancer")
BALANCER_PARAMS = ("lbmethod", "stickysession", "nofailover", "failonstatus", "failontimeout", "maxattempts",
                   "growth", "forcerecovery", "scolonpathdelim", "timeout", "stickysessionsep", "nonce")
# What mod_proxy accepts on a worker (set_worker_param, and mod_proxy_hcheck's); httpd refuses others.
WORKER_PARAMS = ("acquire", "addressttl", "connectiontimeout", "disablereuse", "enablereuse", "flusher",
                 "flushpackets", "flushwait", "iobuffersize", "keepalive", "lbset", "loadfactor", "max", "min", "ping",
                 "receivebuffersize", "redirect", "responsefieldsize", "retry", "route", "secret", "smax", "status",
                 "timeout", "ttl", "upgrade", "hcmethod", "hcinterval", "hcpasses", "hcfails", "hcuri", "hcexpr",
                 "hctemplate")
UNSUPPORTED_WORKER_PARAMS = {
    "retry": "retry is kept per balancer in mpm-proxy; a plain backend is retried on the next request",
    "max": "mpm-proxy has no connection cap per backend outside balancers",
}


@dataclass
class Pass:
    """One ProxyPass/ProxyPassMatch line, parsed as add_pass() does."""
    directive: Directive
    fake: str
    real: str
    regex: bool
    params: dict[str, str]
    flags: set[str]


def parse_pass(d: Directive, location: Directive | None, ctx: Context) -> Pass | None:
    words = d.words
    fake = regex = None
    if location is not None:
        fake = location.words[-1] if location.words else ""
        # httpd reads the section's pattern as a regex for its ProxyPass only when the pattern
        # holds a wildcard character, in <LocationMatch> too (probed against httpd 2.4.71);
        # otherwise as literal text, matched as `ProxyPass /path` is (see _read_literally).
        regex = _has_wildcard([fake])
    real, params, flags, pending = None, {}, set(), list(words)
    is_regex = d.key == "proxypassmatch"
    while pending:
        word = pending.pop(0)
        if fake is None:
            if word == "~" and not is_regex:
                is_regex = True
                continue
            fake = word
        elif real is None:
            real = word
        elif word.lower() in ("nocanon", "interpolate", "noquery"):
            flags.add(word.lower())
        elif "=" in word:
            key, _, value = word.partition("=")
            params[key.lower()] = value
        else:
            why = ("can not have a path when defined in a location" if location is not None and real.startswith("/")
                   else "parameters must be in the form 'key=value'")
            ctx.report.error(d.where, f"{d.name}: {why} (got '{word}')")
            return None
    if real is None:
        ctx.report.error(d.where, f"{d.name} needs a URL" + ("" if location is not None else
                                                               " (and a path, when not inside a <Location>)"))
        return None
    if location is not None and regex:
        is_regex = True
    known = BALANCER_PARAMS if real.lower().startswith("balancer://") else WORKER_PARAMS
    unknown = [k for k in params if k not in known]
    if unknown and real != "!":
        kind = "Balancer" if known is BALANCER_PARAMS else "Worker"
        hint = " (put it on the BalancerMember lines)" if kind == "Balancer" and unknown[0] in WORKER_PARAMS \
            else did_you_mean(unknown[0], known)
        ctx.report.error(d.where, f"{d.name}: unknown {kind} parameter '{unknown[0]}' (httpd refuses it){hint}")
        return None
    section_regex = location is not None and (location.name == "LocationMatch" or location.words[:1] == ["~"])
    if is_regex or section_regex:       # (httpd compiles a regex section's pattern whatever its ProxyPass does)
        fake, problem = patterns.read(fake)
        if problem:
            ctx.report.error(d.where, f"{d.name}: the regular expression '{fake}' could not be compiled: {problem}")
            return None
    return Pass(d, fake, real, is_regex, params, flags)


class Workers:
    """mod_proxy's workers of one server: longest-prefix sharing by URL (ap_proxy_get_worker_ex)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.defined: list[Worker] = []

    def find(self, url: str) -> Worker | None:
        low = url.lower()
        best = None
        for worker in self.defined:
            if low.startswith(worker.url.lower()) and (best is None or len(worker.url) > len(best.url)):
                best = worker
        return best

    def define(self, p: Pass) -> Worker:
        """The worker a ProxyPass uses: an existing one its URL starts with, else a new one."""
        shared = self.find(p.real)
        if shared is None:
            worker = Worker(p.real, dict(p.params), p.directive)
            self.defined.append(worker)
            return worker
        if p.params:
            self.ctx.report.warn(p.directive.where, f"{p.directive.name}: parameters {_show(p.params)} are ignored: "
                                 f"httpd shares the worker '{shared.url}' defined at {shared.source.where} "
                                 "(its parameters apply)")
        return shared


def _show(params: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def upgrade_option(scheme: str, params: dict[str, str], fallback: bool) -> list[str] | str:
    """The route's `upgrade:` from the worker's scheme and upgrade= (mod_proxy_http's rules
    since 2.4.47: an upgrade=-less http(s) worker tunnels nothing, a ws(s) one WebSocket)."""
    value = params.get("upgrade")
    if value is None:
        return ["websocket"] if scheme in ("ws", "wss") else []
    if value.upper() == "ANY" or value == "*":
        return "ANY"
    if value.upper() == "NONE":
        return [] if fallback else "NONE"
    return [n.strip() for n in value.split(",") if n.strip()]


class PassTranslator:
    """The ProxyPass rules of one server (a Scope) -> RouteSpecs, in httpd's order."""

    def __init__(self, scope: Scope, ctx: Context, workers: Workers, fallback: bool):
        self.scope, self.ctx, self.workers, self.fallback = scope, ctx, workers, fallback
        self.parsed: dict[int, tuple[Pass, Worker | None]] = {}
        self._prepare()

    def _prepare(self) -> None:
        """Parse every ProxyPass of this server in file order: that order defines the workers."""
        entries = [(d, None) for d in self.scope.chain("ProxyPass", "ProxyPassMatch")]
        for section in self.scope.locations():
            entries.extend((d, section) for d in section.children or [] if d.key in ("proxypass", "proxypassmatch"))
        for d, section in sorted(entries, key=lambda e: e[0].seq):
            self.ctx.take(d)
            p = parse_pass(d, section, self.ctx)
            if p is None:
                continue
            parts = split_url(p.real)
            scheme = parts[0] if parts else ""
            worker = self.workers.define(p) if scheme in SCHEMES and scheme != "balancer" else None
            self.parsed[id(d)] = (p, worker)

    def location_specs(self) -> list[RouteSpec]:
        """The last matching <Location> with a ProxyPass wins: reverse file order."""
        specs = []
        for section in reversed(self.scope.locations()):
            passes = [d for d in section.children or [] if d.key in ("proxypass", "proxypassmatch")]
            if not passes:
                continue
            for earlier in passes[:-1]:
                self.ctx.report.dropped(earlier.where, earlier.name, f"a later {passes[-1].name} in the same "
                                        f"<{section.name}> ({passes[-1].where}) replaces it, as in httpd")
            if section.name == "Location" and section.words[:1] != ["~"] and _has_wildcard(section.words[-1:]):
                self.ctx.report.dropped(passes[-1].where, passes[-1].name, f"<Location {section.args}> uses a "
                                        "wildcard, which httpd matches differently in the section and in its "
                                        "ProxyPass", routing=True)
                continue
            if self._read_literally(section, passes[-1]):
                continue
            spec = self._spec(passes[-1], section)
            if spec is not None:
                specs.append(spec)
        return specs

    def _read_literally(self, section: Directive, d: Directive) -> bool:
        """A ProxyPass in <LocationMatch>/<Location ~> whose pattern has no `*?[`: httpd takes the
        pattern as literal text, a path prefix.  True (and a note) when no prefix route says that:
        a pattern no path starts with (`^/api/`) never applies; other regex characters would
        make the section and its ProxyPass disagree."""
        literal = section.words[-1] if section.words else ""
        if d.key != "proxypass" or (section.name == "Location" and section.words[:1] != ["~"]) or \
                _has_wildcard([literal]):
            return False
        if not literal.startswith("/"):
            self.ctx.report.dropped(d.where, d.text(), f"never used: in <{section.name} {section.args}> httpd's "
                                    f"ProxyPass reads '{literal}' as literal text (a regex only with *, ? or [), "
                                    "and no path starts with it; ProxyPassMatch takes a regex")
            return True
        if any(c in literal for c in "$^+()|\\{}"):
            self.ctx.report.dropped(d.where, d.text(), f"httpd's ProxyPass reads '{literal}' as literal text (a "
                                    "regex only with *, ? or [) but the section as a regex, which mpm-proxy cannot "
                                    "express; ProxyPassMatch takes a regex", routing=True)
            return True
        return False

    def server_specs(self) -> list[RouteSpec]:
        specs = []
        for d in self.scope.chain("ProxyPass", "ProxyPassMatch"):
            spec = self._spec(d, None)
            if spec is not None:
                specs.append(spec)
        return specs

    def _spec(self, d: Directive, section: Directive | None) -> RouteSpec | None:
        if id(d) not in self.parsed:
            return None
        p, worker = self.parsed[id(d)]
        sources = [section, d] if section is not None else [d]
        if p.real == "!":
            return RouteSpec(sources, prefix=None if p.regex else p.fake, pattern=p.fake if p.regex else None,
                             exclusion=True)
        parts = split_url(p.real)
        if parts is None or parts[0] not in SCHEMES:
            scheme = parts[0] if parts else p.real.split(":", 1)[0]
            self.ctx.report.dropped(d.where, d.text(), f"mpm-proxy proxies to http, https, ws, wss and balancer "
                                    f"URLs, not {scheme}", routing=True)
            return None
        if "$" in parts[1] and parts[0] != "balancer":
            # (An undefined ${VAR} stays as text, as in httpd; a $N there is not httpd's either.)
            self.ctx.report.error(d.where, f"{d.name}: the host '{parts[1]}' holds a '$': mpm-proxy needs the "
                                           "backend's host and port written out (is a ${VAR} not defined?)")
            return None
        for flag in sorted(p.flags):
            self._flag(d, flag)
        if parts[0] == "balancer":
            self._balancer_params(p)
        if p.regex:
            try:
                pattern, to = _template(p, self.ctx)
            except patterns.PatternError as why:
                self.ctx.report.dropped(d.where, d.text(), str(why), routing=True)
                return None
            spec = RouteSpec(sources, pattern=pattern, to=to)
        else:
            spec = RouteSpec(sources, prefix=p.fake, to=p.real, exact=self._no_path(p, parts[2]))
        spec.options.update(self.worker_options(worker, parts[0], d))
        if parts[0] in ("ws", "wss") and not self.fallback:
            # mod_proxy_wstunnel itself (ProxyWebsocketFallbackToProxyHttp Off) passes on a
            # request without an Upgrade header to the next rule (its check_trans hook).  "."
            # is "not empty": a missing field reads as "" (worker.routing).
            spec.when["Upgrade"] = ["."]
            spec.comments.append("(only requests with an Upgrade header: mod_proxy_wstunnel passes the others on)")
        return spec

    def _no_path(self, p: Pass, path: str) -> bool:
        """`ProxyPass /b/ http://h:p` (or in <Location /b/>): httpd appends the rest of the path
        to the URL as it is, so /b/x asks for host `h:px` (500; 400 for /b/1) and only /b/ itself,
        with its query, reaches the backend, as "/" (probed against httpd 2.4).  The import sent
        /b/x to /x, a path httpd never exposed: now it gives what httpd serves, no more."""
        if path or not p.fake.endswith("/"):
            return False
        self.ctx.report.warn(p.directive.where, f"ProxyPass {p.fake} to a URL without a path: httpd appends the rest "
                             f"of the path to the URL as it is ({p.fake}x asks for '{p.real}x': 500), so only "
                             f"{p.fake} itself reaches {p.real}/; translated so, and the rest of {p.fake} goes to no "
                             f"later rule (404 here); write {p.real}/ to send {p.fake}x to /x")
        return True

    def worker_options(self, worker: Worker | None, scheme: str, d: Directive) -> dict:
        """upgrade/timeout of the worker a request is sent with (a balancer's come from its members).
        Parameters are reported (once) on the line that defined the worker."""
        params = worker.params if worker is not None else {}
        options: dict = {}
        if scheme != "balancer":
            options["upgrade"] = upgrade_option(scheme, params, self.fallback)
        own = worker is not None and worker.source is d
        for key, value in params.items():
            if key in ("timeout", "connectiontimeout"):
                t = seconds(value) if key == "connectiontimeout" else whole_seconds(value, d, self.ctx.report
                                                                                    if own else None)
                if t is None or t <= 0:
                    if own:
                        self.ctx.report.error(d.where, f"{d.name}: {key}={value} is not a valid timeout")
                elif key == "timeout":
                    options["timeout"] = t
                elif own:
                    self.ctx.connect_timeouts.append((t, d))
            elif key == "upgrade" and value.upper() == "NONE" and self.fallback and own:
                self.ctx.report.warn(d.where, "upgrade=NONE: mod_proxy_http handles ws:// here "
                                     "(ProxyWebsocketFallbackToProxyHttp is On) and takes NONE as a protocol name, "
                                     "so nothing is tunnelled; translated as upgrade: [] (with the fallback Off, "
                                     "mod_proxy_wstunnel's NONE means: always tunnel)")
            elif key != "upgrade" and own:
                why = UNSUPPORTED_WORKER_PARAMS.get(key, "no mpm-proxy equivalent for this worker parameter")
                self.ctx.report.dropped(d.where, f"{d.name} ... {key}={value}", why)
        return options

    def _flag(self, d: Directive, flag: str) -> None:
        if flag == "nocanon":
            return      # mpm-proxy forwards the path byte for byte: what nocanon asks for
        if flag == "noquery":
            self.ctx.report.dropped(d.where, f"{d.name} ... noquery", "mpm-proxy always forwards the query string",
                                    routing=True)
        else:
            self.ctx.report.dropped(d.where, f"{d.name} ... interpolate", "no environment interpolation in "
                                    "mpm-proxy; the URL is used as written", routing=True)

    def _balancer_params(self, p: Pass) -> None:
        name = self.ctx.balancer_name(self.scope, split_url(p.real)[1].lower())
        for key, value in p.params.items():
            self.ctx.balancer_params.setdefault(name, []).append((key, value, p.directive))


def _template(p: Pass, ctx: Context) -> tuple[str, str]:
    """(pattern, URL template) with httpd's substitution rules: a $N past the groups is empty,
    and a URL without any $N gets the whole path appended (mod_proxy's "$1 is implied" case)."""
    groups = patterns.group_count(p.fake)
    real = p.real
    if "$" not in real:
        scheme, authority, path = split_url(real)
        capture = "(.*)" if path else "/(.*)"
        if groups + 1 > 9:
            raise patterns.PatternError(f"'{p.fake}' has too many groups")
        return f"^(?=.*?{patterns.scoped(p.fake, None)}){capture}$", f"{real if path else real + '/'}${groups + 1}"
    real = patterns.renumber(real, 0, groups, lambda n: ctx.report.warn(
        p.directive.where, f"{p.directive.name}: ${n} is empty (the pattern has {groups} group(s)), as in httpd"))
    return p.fake, real


def _has_wildcard(words: list[str]) -> bool:
    return any(c in w for w in words for c in "*?[")
