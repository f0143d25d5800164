"""<Proxy balancer://NAME> + BalancerMember + ProxySet (mod_proxy_balancer, mod_proxy_hcheck)
-> mpm-proxy `balancers:`.

Balancer names are case-insensitive in httpd (kept lower-case here).  Parameters that
are per member in httpd but per balancer in mpm-proxy (retry=, the health check) are
taken when every member agrees and reported otherwise.  The sticky-cookie idiom

    Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED

becomes `sticky: {cookie: ROUTEID, insert: true}`.
"""

from __future__ import annotations

import re

from conf.addresses import BALANCER_NAME

from . import ignored
from .context import Context, seconds
from .reader import Directive
from .routes import split_url
from .scope import Scope

METHODS = ("byrequests", "bytraffic", "bybusyness")
STATUS_FLAGS = {"D": "disabled", "S": "disabled", "H": "hot-standby", "N": "drain", "R": "hot-standby"}
HC_KEYS = {"hcmethod": "method", "hcuri": "path", "hcinterval": "interval", "hcpasses": "passes",
           "hcfails": "fails", "hcexpr": "expect"}
_INSERT_COOKIE = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)=\.?%\{BALANCER_WORKER_ROUTE\}e(;.*)?$")
_STATUS_EXPR = re.compile(r"^\{?\s*%\{REQUEST_STATUS\}\s*=~\s*/(.+)/\s*\}?$")


class BalancerTranslator:
    def __init__(self, ctx: Context, scopes: list[Scope]):
        self.ctx = ctx
        self.scopes = scopes
        self.result: dict[str, dict] = {}
        self.comments: dict[str, list[str]] = {}
        self.upgrade: dict[str, list | str] = {}      # what a route to the balancer tunnels (its members')
        self.sources: dict[str, Directive] = {}
        self.renamed: dict[str, str] = {}                 # output name -> the name in the Apache file
        self.shadowed: dict[tuple[int, str], Directive] = {}   # a virtual host's own, hidden by the main server's
        self._scope_names(scopes[0], scopes[1:])

    def _scope_names(self, main: Scope, vhosts: list[Scope]) -> None:
        """httpd's balancers belong to a server: a virtual host finds the main server's first
        (its own come after them in the merged list), then its own.  So a virtual host's own
        balancer of a name the main server defines is never used, and two virtual hosts' of one
        name are two balancers: the later one is renamed (mpm-proxy's names are global)."""
        in_main = {name for name, _ in _defined(main)}
        every = in_main | {name for vhost in vhosts for name, _ in _defined(vhost)}
        owned = set(in_main)
        for vhost in vhosts:
            for name, d in _defined(vhost):
                key = (id(vhost), name)
                if name in in_main:
                    self.shadowed.setdefault(key, d)
                elif name in owned and key not in self.ctx.balancer_aliases:
                    alias = next(f"{name}-{n}" for n in range(2, len(every) + 3) if f"{name}-{n}" not in every)
                    every.add(alias)
                    self.ctx.balancer_aliases[key] = alias
                    self.renamed[alias] = name
            owned.update(name for name, _ in _defined(vhost))

    def translate(self) -> None:
        for scope in self.scopes:
            for d in scope.own("Proxy"):
                if d.words and d.words[0].lower().startswith("balancer://"):
                    self._section(self.ctx.take(d), scope)
            for d in scope.own("BalancerMember"):
                url = d.words[0] if d.words else ""
                if not url.lower().startswith("balancer://"):
                    self._member_line(self.ctx.take(d), "", d.words[1:])
                elif not self._hidden(scope, url, d):
                    self._member_line(self.ctx.take(d), self._name(url, scope), d.words[1:])
        for scope in self.scopes:
            for d in scope.own("ProxySet"):
                if d.words and d.words[0].lower().startswith("balancer://") and not self._hidden(scope, d.words[0], d):
                    self._params(self._name(d.words[0], scope), d.words[1:], self.ctx.take(d))
        for name, entries in self.ctx.balancer_params.items():
            for key, value, d in entries:
                self._param(name, key, value, d)
        self._insert_cookies()
        self._finish()

    def _name(self, url: str, scope: Scope | None = None) -> str:
        """The output name of a balancer:// URL (as `scope` sees it)."""
        parts = split_url(url)
        name = parts[1].lower() if parts else url.lower()
        return self.ctx.balancer_name(scope, name) if scope is not None else name

    def _hidden(self, scope: Scope, url: str, d: Directive) -> bool:
        """A virtual host's definition of a balancer the main server has: reported, never used."""
        name = self._name(url)
        if (id(scope), name) not in self.shadowed:
            return False
        main = next(b for n, b in _defined(self.scopes[0]) if n == name)
        self.ctx.take(d)
        self.ctx.report.dropped(d.where, d.text(), f"never used: in this virtual host httpd uses the main server's "
                                f"balancer://{name} ({main.where}), which comes first")
        if d.children:
            ignored.mark(self.ctx, d.children)
        return True

    def _balancer(self, name: str, d: Directive) -> dict:
        if name not in self.result and not BALANCER_NAME.match(name):
            self.ctx.report.error(d.where, f"balancer name '{name}': mpm-proxy's begin with a letter or digit and "
                                           "use only letters, digits, '.', '_' and '-': rename it")
        if name not in self.result:
            self.result[name] = {"members": []}
            self.comments[name] = [f"{d.where}  {d.text()}"]
            if name in self.renamed:
                self.comments[name].append(f"(renamed from balancer://{self.renamed[name]}: another server of the "
                                           "Apache file has a balancer of that name, and httpd keeps them apart)")
            self.sources[name] = d
        return self.result[name]

    def _section(self, section: Directive, scope: Scope) -> None:
        if self._hidden(scope, section.words[0], section):
            return
        name = self._name(section.words[0], scope)
        self._balancer(name, section)
        for d in section.children or []:
            self.ctx.take(d)
            if d.key == "balancermember":
                self._member_line(d, name, d.words)
            elif d.key == "proxyset":
                words = d.words
                if words and "://" in words[0] and not words[0].lower().startswith("balancer://"):
                    self.ctx.report.dropped(d.where, d.text(), "parameters of a single member: give them on its "
                                            "BalancerMember line")
                else:
                    self._params(name, words, d)
            else:
                self.ctx.report.dropped(d.where, d.text(), f"inside <Proxy {section.args}> mpm-proxy reads only "
                                        "BalancerMember and ProxySet", routing=d.key in ("require", "deny", "allow"))

    def _params(self, name: str, words: list[str], d: Directive) -> None:
        for word in words:
            key, sep, value = word.partition("=")
            if not sep:
                self.ctx.report.error(d.where, f"ProxySet: parameters must be in the form key=value, got '{word}'")
                continue
            self._param(name, key.lower(), value, d)

    def _param(self, name: str, key: str, value: str, d: Directive) -> None:
        b = self._balancer(name, d)
        where = f"{d.where}  {key}={value}"
        if key == "lbmethod":
            if value.lower() in METHODS:
                b["method"] = value.lower()
                self.comments[name].append(where)
            else:
                self.ctx.report.dropped(d.where, f"lbmethod={value}", f"mpm-proxy balances with {', '.join(METHODS)}"
                                        " or hash; byrequests is used")
        elif key == "stickysession":
            # COOKIE|PARAM (Tomcat's JSESSIONID|jsessionid): httpd reads the route from the
            # cookie COOKIE and from the URL's ;PARAM= or ?PARAM=, the URL first; one name is both
            cookie, _, param = value.partition("|")
            b["sticky"] = {"cookie": cookie, "param": param} if param and param != cookie else cookie
            self.comments[name].append(where)
        elif key == "nofailover":
            b["nofailover"] = value.lower() == "on"
            self.comments[name].append(where)
        elif key == "failonstatus":
            codes = [int(c) for c in re.split(r"[,\s]+", value) if c.isdigit()]
            b["failonstatus"] = codes
            self.comments[name].append(where)
        else:
            self.ctx.report.dropped(d.where, f"{d.name} ... {key}={value}", "no mpm-proxy equivalent for this "
                                    "balancer parameter")

    def _member_line(self, d: Directive, name: str, words: list[str]) -> None:
        """`name`: the balancer's output name ("" when the line names none)."""
        if not words:
            self.ctx.report.error(d.where, "BalancerMember needs a URL")
            return
        if not name:
            self.ctx.report.error(d.where, "BalancerMember outside <Proxy balancer://...> must name its balancer first")
            return
        b = self._balancer(name, d)
        url, params = words[0], {}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep:
                self.ctx.report.error(d.where, f"BalancerMember: parameters must be key=value, got '{word}'")
                return
            params[key.lower()] = value
        parts = split_url(url)
        if parts is None or parts[0] not in ("http", "https", "ws", "wss"):
            self.ctx.report.dropped(d.where, d.text(), "mpm-proxy members are http, https, ws or wss URLs",
                                    routing=True)
            return
        if parts[2] not in ("", "/"):
            self.ctx.report.dropped(d.where, d.text(), f"the member URL has a path ({parts[2]}); mpm-proxy "
                                    "members have none (put it in the ProxyPass URL)", routing=True)
            return
        member = {"url": f"{parts[0]}://{parts[1]}"}
        twin = next((m for m in b["members"] if m["url"].lower() == member["url"].lower()), None)
        if twin is not None:
            self.ctx.report.dropped(d.where, d.text(), f"balancer://{name} has this member already "
                                    f"({twin['_source'].where})")
            return
        member.update(self._member_params(name, params, d))
        member["_source"] = d
        if any(m.get("route") == member.get("route") for m in b["members"] if "route" in member):
            self.ctx.report.dropped(d.where, f"route={member.pop('route')}", f"another member of balancer://{name} "
                                    "has this route: sticky sessions could not tell them apart")
        b["members"].append(member)

    def _member_params(self, name: str, params: dict[str, str], d: Directive) -> dict:
        out: dict = {"_params": params}
        for key, value in params.items():
            if key == "loadfactor":
                try:
                    weight = max(1, min(100, round(float(value))))
                except ValueError:
                    self.ctx.report.error(d.where, f"BalancerMember: loadfactor={value} is not a number")
                    continue
                out["weight"] = weight
            elif key == "route":
                if value:           # route= with nothing: httpd's member has no route, as without it
                    out["route"] = value
            elif key == "lbset":
                if not value.isdigit() or int(value) > 99:
                    self.ctx.report.error(d.where, f"BalancerMember: lbset={value}: LB Set must be between 0 and 99")
                    continue
                out["_lbset"] = int(value)
            elif key == "max":
                out["max_connections"] = int(value) if value.isdigit() else 0
            elif key == "status":
                status = self._status(value, d)
                if status:
                    out["status"] = status
            elif key == "connectiontimeout":
                t = seconds(value)
                if t:
                    self.ctx.connect_timeouts.append((t, d))
            elif key not in HC_KEYS and key not in ("retry", "upgrade"):
                self.ctx.report.dropped(d.where, f"BalancerMember ... {key}={value}", "no mpm-proxy equivalent for "
                                        "this member parameter")
        return out

    def _status(self, value: str, d: Directive) -> str | None:
        found = None
        for flag in value.upper().lstrip("+"):
            if flag in STATUS_FLAGS:
                found = STATUS_FLAGS[flag]
            elif flag not in "+-":
                self.ctx.report.dropped(d.where, f"BalancerMember ... status={value}", f"status flag {flag} has no "
                                        "mpm-proxy equivalent")
        return found

    def _insert_cookies(self) -> None:
        for scope in self.scopes:
            for d in scope.own("Header"):
                self.ctx.take(d)
                words = d.words
                if len(words) >= 3 and words[0].lower() in ("add", "set", "always") and \
                        words[-1] == "env=BALANCER_ROUTE_CHANGED":
                    m = _INSERT_COOKIE.match(words[2] if words[0].lower() != "always" else words[3])
                    targets = [n for n, b in self.result.items() if m and _cookie(b.get("sticky")) == m.group(1)]
                    if targets:
                        for n in targets:
                            sticky = self.result[n]["sticky"]
                            self.result[n]["sticky"] = {**(sticky if isinstance(sticky, dict) else
                                                           {"cookie": sticky}), "insert": True}
                            self.comments[n].append(f"{d.where}  {d.text()}")
                        continue
                self.ctx.report.dropped(d.where, d.text(), "mpm-proxy does not edit headers")

    def _finish(self) -> None:
        for name, b in self.result.items():
            members = b.pop("members")
            self._agree(name, b, members, "retry", lambda p: seconds(p["retry"]) if "retry" in p else None)
            health = self._health(members)
            self._agree(name, b, members, "health", lambda p, h=health: h.get(id(p)))
            self.upgrade[name] = self._upgrade(name, members)
            self._lbsets(name, members)
            clean = []
            for m in members:
                self.comments.setdefault(name, [])
                clean.append({k: v for k, v in m.items() if not k.startswith("_")})
            b["members"] = clean
            cookie = _cookie(b.get("sticky"))
            if cookie and not any("route" in m for m in clean):
                self.ctx.report.dropped(self.sources[name].where, f"stickysession={cookie}", "no member has a "
                                        "route= for sessions to stick to")
                b.pop("sticky")

    def _lbsets(self, name: str, members: list[dict]) -> None:
        """lbset=N: httpd uses the members of a set only when no member of a lower set is usable;
        with two sets that is mpm-proxy's hot-standby for the higher one."""
        levels = sorted({m.get("_lbset", 0) for m in members})
        if len(levels) < 2:
            return
        if len(levels) > 2 or any(m.get("status") == "hot-standby" for m in members):
            self.ctx.report.warn(self.sources[name].where, f"balancer://{name}: lbset {', '.join(map(str, levels))} "
                                 "and hot standbys (status=+H) are levels of fallback in httpd; mpm-proxy has one: "
                                 f"every member past lbset {levels[0]} is a hot standby", routing=True)
        for m in members:
            if m.get("_lbset", 0) > levels[0] and m.get("status") not in ("disabled", "drain"):
                m["status"] = "hot-standby"

    def _agree(self, name: str, b: dict, members: list[dict], key: str, value_of) -> None:
        """A per-member parameter that mpm-proxy keeps per balancer: taken when all members agree."""
        values = [value_of(m["_params"]) for m in members]
        given = [v for v in values if v is not None]
        if not given:
            return
        if len(set(map(repr, values))) == 1:
            b[key] = given[0]
            return
        first = next(m for m, v in zip(members, values, strict=True) if v is not None)
        for m, v in zip(members, values, strict=True):
            if repr(v) != repr(given[0]):
                self.ctx.report.dropped(m["_source"].where, f"{key} of {m['url']}", f"mpm-proxy has one {key} per "
                                        f"balancer; the one of {first['url']} ({first['_source'].where}) is used")
        b[key] = given[0]

    def _health(self, members: list[dict]) -> dict[int, dict]:
        """mod_proxy_hcheck parameters of each member (by id of its params) -> `health:`."""
        out = {}
        for m in members:
            params, d = m["_params"], m["_source"]
            method = params.get("hcmethod", "").upper()
            if not method or method == "NONE":
                continue
            check: dict = {"method": method[:-2] if method.endswith("11") else method}
            if check["method"] not in ("TCP", "GET", "HEAD", "OPTIONS"):
                self.ctx.report.dropped(d.where, f"hcmethod={method}", "mpm-proxy checks with TCP, GET, HEAD or "
                                        "OPTIONS")
                continue
            for key, value in params.items():
                if key in ("hcuri", "hcpasses", "hcfails"):
                    check[HC_KEYS[key]] = int(value) if value.isdigit() else value
                elif key == "hcinterval":
                    check["interval"] = seconds(value) or 30
                elif key == "hcexpr":
                    expect = self._expect(value, d)
                    if expect:
                        check["expect"] = expect
            if check["method"] == "TCP":
                check.pop("path", None)
            check.setdefault("interval", 30.0)    # mod_proxy_hcheck's default hcinterval
            out[id(params)] = check
        return out

    def _expect(self, name: str, d: Directive) -> str | None:
        for scope in self.scopes:
            for expr in scope.own("ProxyHCExpr"):
                self.ctx.take(expr)
                words = expr.words
                if words and words[0] == name:
                    m = _STATUS_EXPR.match(" ".join(words[1:]))
                    if m:
                        return m.group(1)
                    self.ctx.report.dropped(expr.where, expr.text(), "mpm-proxy checks only the status code "
                                            "(%{REQUEST_STATUS} =~ /regex/)")
                    return None
        self.ctx.report.dropped(d.where, f"hcexpr={name}", "no ProxyHCExpr defines it")
        return None

    def _upgrade(self, name: str, members: list[dict]) -> list | str:
        """What httpd tunnels through this balancer: the chosen member's scheme and upgrade=."""
        from .proxypass import upgrade_option
        kinds = [upgrade_option(split_url(m["url"])[0], m["_params"], True) for m in members]
        if kinds and any(k != kinds[0] for k in kinds):
            self.ctx.report.warn(self.sources[name].where, f"balancer://{name}: members tunnel different upgrades; "
                                 f"mpm-proxy decides per route, so the first member's ({kinds[0]}) is used")
        return kinds[0] if kinds else []


def _defined(scope: Scope) -> list[tuple[str, Directive]]:
    """(name, directive) of the balancers `scope` defines itself: <Proxy balancer://NAME> sections
    and BalancerMember balancer://NAME lines, in file order."""
    found = []
    for d in scope.own("Proxy", "BalancerMember"):
        url = d.words[0].lower() if d.words else ""
        if url.startswith("balancer://"):
            found.append((split_url(url)[1] if split_url(url) else url, d))
    return found


def _cookie(sticky) -> str | None:
    """The cookie name of a balancer's `sticky:` as written so far (a name, or a mapping)."""
    return sticky["cookie"] if isinstance(sticky, dict) else sticky
