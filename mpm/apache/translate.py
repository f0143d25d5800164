"""The httpd directive tree -> the parts of an mpm-proxy configuration, with comments.

mpm-proxy has one route list for all its listeners; httpd has one per virtual host.
Listeners served by the same virtual hosts share a route list; name-based virtual hosts
on one address become routes guarded by the Host header (the first virtual host, httpd's
default for the address, last and guarded by "none of the other names").  When listeners
would need different route lists, the first one's is kept and the others' listeners are
reported as not translated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import ignored, listen, routes
from .balancers import BalancerTranslator
from .context import Context, on_off, timeout_of
from .proxypass import PassTranslator, Workers
from .reader import Tree
from .report import Report
from .rewrite import RewriteTranslator
from .routes import Emitted, RouteSpec, split_url
from .scope import Scope, split_scopes
from .server import Settings, server_settings


@dataclass
class Translation:
    listen: list[tuple[object, str]] = field(default_factory=list)        # (entry, comment)
    settings: Settings = field(default_factory=Settings)
    routes: list[Emitted] = field(default_factory=list)
    balancers: dict[str, dict] = field(default_factory=dict)
    balancer_comments: dict[str, list[str]] = field(default_factory=dict)


def translate(tree: Tree, report: Report, file: str) -> Translation:
    ctx = Context(tree, report, os.path.abspath(file))
    main, vhosts = split_scopes(tree.directives)
    out = Translation()
    listens = listen.parse_listens(ctx, main)
    groups: dict[tuple, list[listen.ListenSpec]] = {}
    for spec in listens:
        serving = listen.serving(spec, vhosts)
        groups.setdefault(tuple(serving) if serving else (main,), []).append(spec)
        if spec.host is None and serving and serving[0].vhost is not None and all(
                listen.ip_based_note([spec], s) for s in serving):
            report.warn(spec.directive.where, f"{spec.address} is served by IP-based virtual hosts only: httpd "
                        "sends connections to its other addresses to the main server, mpm-proxy to them",
                        routing=True)
    for vhost in vhosts:
        ctx.take(vhost.vhost)
        if not any(vhost in group for group in groups):
            why, routing = listen.unserved(listens, vhost)
            report.dropped(vhost.vhost.where, vhost.vhost.text(), why, routing=routing)
            ignored.mark(ctx, vhost.directives)
    balancers = BalancerTranslator(ctx, [main, *vhosts])
    per_group = {group: _group_routes(ctx, list(group), main) for group in groups}
    balancers.translate()
    kept = _choose(ctx, groups, per_group)
    out.listen = _listeners(ctx, groups, per_group, kept)
    ctx.client_certs = any(isinstance(entry, dict) and "client_ca" in (entry.get("tls") or {}) for entry, _ in out.listen)
    out.routes = _with_balancers(ctx, per_group[kept] if kept else [], balancers)
    out.balancers, out.balancer_comments = balancers.result, balancers.comments
    serving = [s for group in groups if group is kept or _same(per_group[group], per_group[kept]) for s in group]
    server_settings(ctx, main, out.settings, [s for s in dict.fromkeys(serving) if s is not main])
    _report_unused_reverse(ctx, list(dict.fromkeys([main] + [s for group in groups for s in group])))
    ignored.report_untranslated(ctx, main.directives)
    for vhost in vhosts:
        ignored.report_untranslated(ctx, vhost.directives, vhost.vhost)
    return out


def _listeners(ctx: Context, groups: dict, per_group: dict, kept) -> list[tuple[object, str]]:
    """`listen:` entries (with `tls:` where the virtual hosts serving them have SSLEngine On)."""
    out = []
    for group, specs in groups.items():
        if group is not kept and not _same(per_group[group], per_group[kept]):
            continue
        tls = listen.tls_section(ctx, list(group))
        for spec in specs:
            entry = {"address": spec.address, "tls": tls} if tls else spec.address
            out.append((entry, f"{spec.directive.where}  {spec.directive.text()}"))
    return out


def _fallback(ctx: Context, main: Scope) -> bool:
    """Whether mod_proxy_http handles ws:// URLs (ProxyWebsocketFallbackToProxyHttp, default On)."""
    d = main.last("ProxyWebsocketFallbackToProxyHttp")
    if d is not None and on_off(d, ctx.report) is False:
        return False
    return ctx.tree.modules.has("proxy_http_module")


def _group_routes(ctx: Context, group: list[Scope], main: Scope) -> list[Emitted]:
    if group == [main]:
        return routes.finalize(_server_specs(ctx, main), None)
    out: list[Emitted] = []
    default, others = group[0], group[1:]
    taken: list[str] = list(default.names)
    named = []
    for vhost in others:
        names = [n for n in vhost.names if n not in taken]
        taken.extend(names)
        if not names:
            why = ("httpd never picks it: an earlier virtual host on the address has its names" if vhost.names else
                   "no ServerName or ServerAlias, in it or in the main server: httpd names it after the machine "
                   "(its hostname), which the import cannot know")
            ctx.report.dropped(vhost.vhost.where, vhost.vhost.text(), why,
                               routing=not vhost.names and bool(_server_specs(ctx, vhost)))
            continue
        named.append(names)
        out.extend(routes.finalize(_server_specs(ctx, vhost), routes.host_pattern(names)))
    other_names = [n for names in named for n in names]
    guard = routes.not_host_pattern(other_names) if other_names else None
    out.extend(routes.finalize(_server_specs(ctx, default), guard))
    return out


def _server_specs(ctx: Context, scope: Scope) -> list[RouteSpec]:
    """One server's routes in httpd's order: rewrite [P], then <Location>, then ProxyPass."""
    fallback = _fallback(ctx, scope.main or scope)
    workers = Workers(ctx)
    passes = PassTranslator(scope, ctx, workers, fallback)
    location = passes.location_specs()
    server = passes.server_specs()
    rewrite = RewriteTranslator(scope, ctx, workers, fallback).specs()
    for d in scope.chain("RewriteEngine", "RewriteOptions"):
        ctx.take(d)
    specs = rewrite + location + server
    _per_server_options(ctx, scope, specs)
    _local_balancers(ctx, scope, specs)
    return specs


def _local_balancers(ctx: Context, scope: Scope, specs: list[RouteSpec]) -> None:
    """A route to balancer://NAME goes to the balancer this server sees under NAME (renamed
    when another virtual host of the file has one of the same name)."""
    for spec in specs:
        parts = split_url(spec.to) if spec.to else None
        if parts is None or parts[0] != "balancer":
            continue
        local = ctx.balancer_name(scope, parts[1].lower())
        if local != parts[1].lower():
            spec.to = f"balancer://{local}{parts[2]}"
            spec.comments.append(f"(this virtual host's own balancer://{parts[1].lower()}, named {local} here)")


def _per_server_options(ctx: Context, scope: Scope, specs: list[RouteSpec]) -> None:
    """preserve_host, reverse, a virtual host's own ProxyTimeout, backend TLS."""
    preserve = scope.last("ProxyPreserveHost")
    for d in scope.chain("ProxyPreserveHost", "ProxyPassReverse"):
        ctx.take(d)
    timeout = _own_timeout(ctx, scope)
    server_rules = [(d.words[0], d.words[1], d) for d in scope.chain("ProxyPassReverse") if len(d.words) >= 2]
    for spec in specs:
        if spec.exclusion:
            continue
        section = spec.sources[0] if spec.sources[0].children is not None else None
        local = section.children if section is not None else []
        keep = next((d for d in reversed(local) if d.key == "proxypreservehost"), None) or preserve
        if keep is not None and on_off(ctx.take(keep), ctx.report):
            spec.options["preserve_host"] = True
        rules = [(section.words[-1], ctx.take(d).words[0], d) for d in local if d.key == "proxypassreverse" and d.words]
        if _reverse_applies(ctx, spec, rules + server_rules):
            spec.options["reverse"] = True
        if timeout is not None and "timeout" not in spec.options:
            spec.options["timeout"] = timeout
        if split_url(spec.to)[0] in ("https", "wss"):
            spec.options["tls"] = listen.backend_tls(ctx, scope, spec.sources[0])


def _reverse_applies(ctx: Context, spec: RouteSpec, rules: list[tuple[str, str, object]]) -> bool:
    """A ProxyPassReverse for this route's path (or any, for a rewrite) and backend."""
    target = split_url(spec.to)
    found = False
    for fake, real, d in rules:
        parts = split_url(real)
        if parts is None or target is None or parts[1].lower() != target[1].lower():
            continue
        if spec.prefix is None or fake.rstrip("/") == spec.prefix.rstrip("/"):
            ctx.reverse_used.add(id(d))
            found = True
    return found


def _report_unused_reverse(ctx: Context, scopes: list[Scope]) -> None:
    for scope in scopes:
        for d in scope.own("ProxyPassReverse"):
            if id(d) not in ctx.reverse_used:
                ctx.report.dropped(d.where, d.text(), "no route has this path and backend: mpm-proxy rewrites "
                                                      "Location headers per route (reverse: true)")


def _own_timeout(ctx: Context, scope: Scope) -> float | None:
    """A virtual host's own ProxyTimeout (or Timeout, when no ProxyTimeout is set anywhere)."""
    if scope.vhost is None:
        return None
    own = scope.own("ProxyTimeout") or ([] if scope.main.own("ProxyTimeout") else scope.own("Timeout"))
    for d in scope.own("ProxyTimeout", "Timeout"):
        ctx.take(d)
    return timeout_of(own[-1], ctx.report) if own else None


def _choose(ctx: Context, groups: dict, per_group: dict) -> tuple | None:
    """The listeners' route list: the first group's that has routes; the others must match it."""
    if not groups:
        return None
    kept = next((g for g in groups if any(e.route for e in per_group[g])), next(iter(groups)))
    for group, specs in groups.items():
        if group is kept or _same(per_group[group], per_group[kept]):
            continue
        for spec in specs:
            ctx.report.dropped(spec.directive.where, spec.directive.text(), "its virtual hosts route requests "
                               "differently from the listener kept, and mpm-proxy has one route list for all "
                               "listeners", routing=True)
    return kept


def _same(a: list[Emitted], b: list[Emitted]) -> bool:
    return [e.route for e in a] == [e.route for e in b]


def _with_balancers(ctx: Context, emitted: list[Emitted], balancers: BalancerTranslator) -> list[Emitted]:
    """Balancer routes get the members' upgrade policy; routes to a balancer without members go."""
    out = []
    for e in emitted:
        if e.route is not None:
            parts = split_url(e.route["to"])
            if parts and parts[0] == "balancer":
                name = parts[1].lower()
                if name not in balancers.result or not balancers.result[name].get("members"):
                    where = e.comments[0].split("  ", 1)[0]
                    ctx.report.dropped(where, e.comments[0].split("  ", 1)[-1], f"balancer://{name} has no "
                                       "members (httpd answers 503)", routing=True)
                    continue
                to = e.route.pop("to").replace(f"balancer://{parts[1]}", f"balancer://{name}", 1)
                rest = e.route.copy()
                e.route.clear()
                e.route.update({k: rest.pop(k) for k in ("path", "match", "when") if k in rest})
                e.route.update(to=to, upgrade=balancers.upgrade.get(name, []), **rest)
        out.append(e)
    return out
