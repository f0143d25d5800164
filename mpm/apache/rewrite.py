"""mod_rewrite in server context: RewriteCond + RewriteRule ... [P] -> RouteSpecs.

httpd runs mod_rewrite's translate_name hook before mod_proxy's, so a [P] rule that
matches wins over every ProxyPass.  A rule applies when its pattern matches the URL-path
(regex search; `!pattern` negates) and its conditions hold: consecutive conditions are
ANDed, `[OR]` joins a condition to the next.  What mpm-proxy can express:

- `%{HTTP:Name}` (and `%{HTTP_HOST}`, `%{HTTP_USER_AGENT}`, ...) against a regex, `!regex`
  or `=string` -> `when: {header: {Name: pattern}}` (case-sensitive unless [NC]); httpd
  sees a missing header as "", mpm-proxy as no match, so a pattern that matches "" can
  only be expressed negated;
- `%{REQUEST_URI}` -> a lookahead on the route's pattern;
- a condition on constant text (`${map:key}` of an undefined map is "") is decided here;
- the substitution: an absolute URL with `$N` and `%{REQUEST_URI}`; the query string is
  carried over, as mod_rewrite does when the substitution has none.
Anything else is reported: a [P] rule that cannot be expressed changes where requests go.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from conf.fields import did_you_mean

from . import patterns, syntax
from .context import Context, on_off
from .proxypass import SCHEMES, Workers, upgrade_option
from .reader import Directive
from .routes import RouteSpec, split_url
from .scope import Scope

FLAG_NAMES = {"proxy": "P", "last": "L", "nocase": "NC", "noescape": "NE", "qsappend": "QSA", "qsdiscard": "QSD",
              "redirect": "R", "passthrough": "PT", "forbidden": "F", "gone": "G", "chain": "C", "next": "N",
              "skip": "S", "type": "T", "env": "E", "cookie": "CO", "nosubreq": "NS", "end": "END",
              "ornext": "OR", "novary": "NV", "qslast": "QSL"}
HARMLESS_WITH_P = {"P", "L", "NC", "NE", "END", "NS"}
KNOWN_FLAGS = set(FLAG_NAMES.values()) | {"B", "BCTLS", "BNE", "BNP", "DPI", "H", "UNSAFEALLOW3F",
                                          "UNSAFEPREFIXSTAT"}
HTTP_VARIABLES = {"HTTP_HOST": "Host", "HTTP_USER_AGENT": "User-Agent", "HTTP_REFERER": "Referer",
                  "HTTP_COOKIE": "Cookie", "HTTP_FORWARDED": "Forwarded", "HTTP_ACCEPT": "Accept",
                  "HTTP_PROXY_CONNECTION": "Proxy-Connection"}
UNIVERSAL = {"", ".*", "^", "^.*", ".*$", "^.*$", "(.*)", "^(.*)$"}
_HEADER_VAR = re.compile(r"^%\{HTTP:([!#$%&'*+.^_`|~0-9A-Za-z-]+)\}$|^%\{(HTTP_[A-Z_]+)\}$")


class Untranslatable(Exception):
    """Why a rule cannot be expressed (the message goes to the report)."""


@dataclass
class Cond:
    directive: Directive
    header: str | None           # a request header; None: the URL-path (REQUEST_URI)
    pattern: str                 # Python regex, as written
    nocase: bool
    negate: bool
    ornext: bool
    constant: bool | None = None  # decided here: always true / always false


def flags_of(text: str | None) -> dict[str, str]:
    """'[P,L,E=a:b]' -> {'P': '', 'L': '', 'E': 'a:b'}."""
    if not text:
        return {}
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"flags must be given as [FLAG,...], got '{text}'")
    out = {}
    for item in text[1:-1].split(","):
        key, _, value = item.strip().partition("=")
        key = FLAG_NAMES.get(key.lower(), key.upper())
        if key and key not in KNOWN_FLAGS:
            raise ValueError(f"unknown flag '{item.strip()}'{did_you_mean(key, sorted(KNOWN_FLAGS))}")
        if key:
            out[key] = value
    return out


class RewriteTranslator:
    def __init__(self, scope: Scope, ctx: Context, workers: Workers, fallback: bool):
        self.scope, self.ctx, self.workers, self.fallback = scope, ctx, workers, fallback

    def specs(self) -> list[RouteSpec]:
        engine = self.scope.last("RewriteEngine")
        rules = self._rule_lines()
        if not rules:
            return []
        if engine is None or not on_off(engine, self.ctx.report):
            for _conds, rule in rules:
                self.ctx.report.dropped(rule.where, rule.text(), "RewriteEngine is not On here, so httpd ignores it")
            return []
        out: list[RouteSpec] = []
        self.rewrote: Directive | None = None      # an earlier rule, not translated, that may change the path
        for conds, rule in rules:
            try:
                specs = self._rule(conds, rule)
            except Untranslatable as why:
                self.ctx.report.dropped(rule.where, rule.text(), str(why), routing=True)
                continue
            if specs and self.rewrote is not None:
                self.ctx.report.warn(rule.where, f"translated as if the RewriteRule at {self.rewrote.where} "
                                     "(not translated) had not changed the path first")
            out.extend(specs)
        return out

    def _rule_lines(self) -> list[tuple[list[Directive], Directive]]:
        """(conditions, rule) pairs in the order httpd applies them here (RewriteOptions Inherit*)."""
        own = _pairs([self.ctx.take(d) for d in self.scope.own("RewriteCond", "RewriteRule")])
        if self.scope.main is None:
            return own
        options = _inherit_options(self.scope)
        if not options & {"inherit", "inheritbefore"}:
            return own
        inherited = _pairs([self.ctx.take(d) for d in self.scope.main.own("RewriteCond", "RewriteRule")])
        return inherited + own if "inheritbefore" in options else own + inherited

    def _rule(self, cond_lines: list[Directive], rule: Directive) -> list[RouteSpec]:
        words = syntax.rewrite_words(rule.args)
        if len(words) not in (2, 3):
            self.ctx.report.error(rule.where, "RewriteRule takes a pattern, a substitution and optional [flags]")
            return []
        try:
            flags = flags_of(words[2] if len(words) == 3 else None)
        except ValueError as exc:
            self.ctx.report.error(rule.where, f"RewriteRule: {exc}")
            return []
        pattern, substitution = words[0], words[1]
        negate = pattern.startswith("!")
        pattern, problem = patterns.read(pattern[1:] if negate else pattern)
        if problem:
            self.ctx.report.error(rule.where, f"RewriteRule: the regular expression '{pattern}' could not be "
                                  f"compiled: {problem}")
            return []
        try:        # read even for a rule that is not translated: httpd refuses a bad condition
            conds = [c for c in (self._cond(d) for d in cond_lines) if c is not None]
            unexpressed = None
        except Untranslatable as why:
            conds, unexpressed = [], why
        if "P" not in flags:
            self._not_proxy(rule, flags, substitution)
            return []
        if unexpressed is not None:
            raise unexpressed
        extra = sorted(set(flags) - HARMLESS_WITH_P)
        if extra:
            raise Untranslatable(f"mpm-proxy cannot do the [{','.join(extra)}] part of a proxied rule")
        groups = 0 if negate else patterns.group_count(pattern)
        combos = _expand(conds)
        if combos is None:
            try:
                self._target(substitution, groups, rule)
                also = ""
            except Untranslatable as why:
                also = f"; and {why}"
            self.ctx.report.dropped(rule.where, rule.text(), "it never applies: its conditions are always false, "
                                    f"as httpd evaluates them{also}")
            return []
        target, uses_uri = self._target(substitution, groups, rule)
        body = f"^(?!.*?{patterns.scoped(patterns.non_capturing(pattern), None)})" if negate else pattern
        specs = []
        for combo in combos:
            specs.append(self._spec(rule, cond_lines, combo, body, "NC" in flags, target, uses_uri))
        return specs

    def _spec(self, rule, cond_lines, combo: list[Cond], body: str, nocase: bool, target: str,
              uses_uri: str | None) -> RouteSpec:
        uri_guards, when = [], {}
        for c in combo:
            if c.header is None:
                look = "?!" if c.negate else "?="
                uri_guards.append(f"({look}.*?{patterns.scoped(patterns.non_capturing(c.pattern), c.nocase)})")
            else:
                when.setdefault(c.header, []).append(_header_pattern(c))
        flags, rest = patterns.split_flags(body)
        if nocase:
            flags += "i"
        lead = f"(?{flags})" if flags else ""
        pattern = rest
        if uri_guards or uses_uri:
            pattern = "^" + (uses_uri or "") + "".join(uri_guards) + f".*?(?:{rest})"
        spec = RouteSpec([rule] + cond_lines, pattern=lead + pattern, to=target, when=when)
        scheme = split_url(target)[0]
        if scheme != "balancer":
            worker = self.workers.find(target.split("$", 1)[0])
            spec.options["upgrade"] = upgrade_option(scheme, worker.params if worker else {}, self.fallback)
        return spec

    def _target(self, substitution: str, groups: int, rule: Directive) -> tuple[str, str | None]:
        """The route's `to` for a [P] substitution, and the capture %{REQUEST_URI} needs (or None):
        right after the host the path's leading '/' stays out of the group, so `to` keeps its own."""
        uses_uri = None
        if "%{REQUEST_URI}" in substitution:
            at_host = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*%\{REQUEST_URI\}", substitution) is not None
            uses_uri = "(?=/(.*))" if at_host else "(?=(.*))"
            substitution = substitution.replace("%{REQUEST_URI}", "/%{REQUEST_URI}", 1) if at_host else substitution
        text = substitution.replace("%{REQUEST_URI}", "\0")
        leftover = re.search(r"%\{[^}]*\}|%\d|\$\{[^}]*\}", text)
        if leftover:
            raise Untranslatable(f"the substitution uses {leftover.group(0)}, which mpm-proxy cannot fill in")
        if "?" in text:
            raise Untranslatable("the substitution sets a query string; mpm-proxy always forwards the client's")
        shift = 1 if uses_uri else 0
        text = patterns.renumber(text, shift, groups, lambda n: self.ctx.report.warn(
            rule.where, f"RewriteRule: ${n} is empty (the pattern has {groups} group(s)), as in httpd"))
        text = text.replace("\0", "$1")
        parts = split_url(text)
        if parts is None:
            hint = re.sub(r"^([a-z]+):/(?!/)", r"\1://", text)
            mean = f" (did you mean '{hint}'?)" if hint != text else ""
            raise Untranslatable(f"'{substitution}' is not an absolute URL{mean}; httpd would proxy it to this "
                                 "server itself")
        if parts[0] not in SCHEMES:
            raise Untranslatable(f"mpm-proxy proxies to http, https, ws, wss and balancer URLs, not {parts[0]}")
        if "$" in parts[1]:
            raise Untranslatable("the host or port comes from the request; mpm-proxy needs it written out")
        if not parts[2]:
            text += "/"
        return text, uses_uri

    def _not_proxy(self, rule: Directive, flags: dict[str, str], substitution: str) -> None:
        if substitution == "-" and not set(flags) & {"F", "G", "R", "PT", "H", "T"}:
            self.ctx.report.dropped(rule.where, rule.text(), "no [P] flag and no new path: only environment or "
                                    "cookies would change, which mpm-proxy does not do")
            return
        what = ("a redirect" if "R" in flags else "a 403" if "F" in flags else "a 410" if "G" in flags
                else "an internal rewrite")
        self.ctx.report.dropped(rule.where, rule.text(), f"{what}, not a proxy rule: mpm-proxy only proxies",
                                routing=True)
        if what == "an internal rewrite" and self.rewrote is None:
            self.rewrote = rule

    def _cond(self, d: Directive) -> Cond | None:
        words = syntax.rewrite_words(d.args)
        if len(words) not in (2, 3):
            self.ctx.report.error(d.where, "RewriteCond takes a test string, a condition and optional [flags]")
            return None
        try:
            flags = flags_of(words[2] if len(words) == 3 else None)
        except ValueError as exc:
            self.ctx.report.error(d.where, f"RewriteCond: {exc}")
            return None
        test, cond = words[0], words[1]
        negate = cond.startswith("!")
        cond = cond[1:] if negate else cond
        if cond.startswith("="):
            pattern = "^" + patterns.literal("" if cond[1:] == '""' else cond[1:]) + "$"
        elif cond[:1] in "<>" or re.match(r"^-[a-zA-Z]{1,2}$", cond):
            raise Untranslatable(f"its condition at {d.where}: the comparison '{cond}' has no mpm-proxy equivalent")
        else:
            pattern, problem = patterns.read(cond)
            if problem:
                self.ctx.report.error(d.where, f"RewriteCond: the regular expression '{cond}' could not be "
                                      f"compiled: {problem}")
                return None
        c = Cond(d, None, pattern, "NC" in flags, negate, "OR" in flags)
        return self._subject(c, test)

    def _subject(self, c: Cond, test: str) -> Cond:
        m = _HEADER_VAR.match(test)
        if test == "%{REQUEST_URI}":
            return c
        if m and (m.group(1) or m.group(2) in HTTP_VARIABLES):
            c.header = m.group(1) or HTTP_VARIABLES[m.group(2)]
            return c
        if "%{" in test or re.search(r"[$%]\d", test):
            raise Untranslatable(f"its condition at {c.directive.where}: mpm-proxy cannot test {test}")
        value = test
        if test.startswith("${") and test.endswith("}") and ":" in test:
            mapname = test[2:].split(":", 1)[0]
            if not any(d.words[:1] == [mapname] for d in self.scope.own("RewriteMap")):
                value = ""
                hint = f" (did you mean %{{{test[2:-1]}}}?)" if mapname.upper() == "HTTP" else ""
                self.ctx.report.warn(c.directive.where, f"RewriteCond: {test} looks up the RewriteMap "
                                     f"'{mapname}', which is not defined, so it is empty{hint}")
        flags = re.IGNORECASE if c.nocase else 0
        c.constant = (re.search(c.pattern, value, flags) is not None) != c.negate
        return c


def _inherit_options(vhost: Scope) -> set[str]:
    """A virtual host's RewriteOptions as mod_rewrite merges them (checked against httpd 2.4.71):
    its own lines, else the main server's; the main server's InheritDown (InheritDownBefore)
    counts as the host's Inherit (InheritBefore) unless the host says IgnoreInherit."""
    own = {w.lower() for d in vhost.own("RewriteOptions") for w in d.words}
    parent = {w.lower() for d in vhost.main.own("RewriteOptions") for w in d.words}
    options = set(own or parent)
    if "ignoreinherit" not in own:
        options |= {"inherit"} if "inheritdown" in parent else set()
        options |= {"inheritbefore"} if "inheritdownbefore" in parent else set()
    return options


def _header_pattern(c: Cond) -> str:
    """The `when.header` pattern for a header condition (a missing header matches nothing here)."""
    matches_empty = re.search(c.pattern, "", re.IGNORECASE if c.nocase else 0) is not None
    if not c.negate:
        if matches_empty:
            raise Untranslatable(f"its condition at {c.directive.where} also holds when the header is missing, "
                                 "which mpm-proxy cannot test")
        return c.pattern if c.nocase else f"(?-i:{c.pattern})"
    if not matches_empty:
        raise Untranslatable(f"its negated condition at {c.directive.where} holds when the header is missing, "
                             "which mpm-proxy cannot test")
    return f"^(?!.*?{patterns.scoped(c.pattern, c.nocase)})"


def _pairs(directives: list[Directive]) -> list[tuple[list[Directive], Directive]]:
    """RewriteConds belong to the RewriteRule that follows them."""
    out, pending = [], []
    for d in directives:
        if d.key == "rewritecond":
            pending.append(d)
        else:
            out.append((pending, d))
            pending = []
    return out


def _expand(conds: list[Cond]) -> list[list[Cond]] | None:
    """ANDed groups of ORed conditions -> the list of AND-combinations; None: never true."""
    groups: list[list[Cond]] = []
    current: list[Cond] = []
    for c in conds:
        current.append(c)
        if not c.ornext:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    options = []
    for group in groups:
        if any(c.constant is True for c in group):
            continue
        live = [c for c in group if c.constant is None]
        if not live:
            return None
        options.append(live)
    return [list(combo) for combo in itertools.product(*options)]
