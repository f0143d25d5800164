"""Every directive no translator took: one `not translated` line each, with the reason, and
whether leaving it out changes where a request goes (or what a backend may trust: access
control, a request header httpd overwrites).

A section (<Directory>, <Files>, <If>, ...) is reported once, as a whole; its content
counts as routing when it holds anything that would (a Require that refuses, a Redirect).
"""

from __future__ import annotations

from .context import Context
from .reader import Directive

# Explicit URL routing or access control that mpm-proxy does not do.
ROUTING = {
    "alias": "mpm-proxy serves no files; these paths get 404 unless a route takes them",
    "aliasmatch": "mpm-proxy serves no files; these paths get 404 unless a route takes them",
    "scriptalias": "mpm-proxy runs no CGI scripts", "scriptaliasmatch": "mpm-proxy runs no CGI scripts",
    "redirect": "mpm-proxy does not answer with redirects", "redirectmatch": "mpm-proxy does not answer with redirects",
    "redirectpermanent": "mpm-proxy does not answer with redirects",
    "redirecttemp": "mpm-proxy does not answer with redirects",
    "proxyremote": "mpm-proxy does not chain to another proxy", "proxyremotematch": "mpm-proxy does not chain to "
    "another proxy",
    "proxypassinterpolateenv": "no environment interpolation in mpm-proxy",
    "sethandler": "mpm-proxy has no local handlers (server-status: use the admin listener)",
    "action": "mpm-proxy runs no handlers", "errordocument": "mpm-proxy sends its own error pages",
    "use": "mod_macro is not expanded by the importer", "rewritemap": "mpm-proxy has no rewrite maps",
    "proxyexpress": "mod_proxy_express maps are not read", "vhostdocumentroot": "mpm-proxy serves no files",
}
ACCESS = ("require", "deny", "allow", "order", "satisfy", "authtype", "authname", "authuserfile", "authbasicprovider")
REASONS = {
    "documentroot": "mpm-proxy serves no files: a request no route takes gets 404",
    "servername": "used to pick the virtual host and its certificate",
    "serveralias": "used to pick the virtual host and its certificate",
    "user": "mpm-proxy runs as the user that starts it", "group": "mpm-proxy runs as the user that starts it",
    "proxyrequests": "mpm-proxy is a reverse proxy only", "rewriteengine": "read with the rewrite rules",
    "rewriteoptions": "read with the rewrite rules", "proxyaddheaders": "mpm-proxy always adds X-Forwarded-*",
    "proxyvia": "mpm-proxy adds no Via header", "header": "mpm-proxy does not edit headers",
    "requestheader": "mpm-proxy does not edit headers",
    "proxywebsocketfallbacktoproxyhttp": "read to decide how ws:// URLs upgrade",
    "defaultruntimedir": "mpm-proxy keeps its pidfile and control socket where control: says",
    "maxkeepaliverequests": "mpm-proxy serves any number of requests on a kept-alive connection",
    "sslcertificatechainfile": "mpm-proxy sends the certificates of the `cert:` file: append this chain to it "
                               "(cat cert.pem chain.pem > fullchain.pem), or clients that lack the intermediate "
                               "certificate fail to verify",
}
FILE_SECTIONS = ("Directory", "DirectoryMatch", "Files", "FilesMatch")
# Settings mpm-proxy has once for all listeners: a virtual host's own value is not used.
SERVER_WIDE = ("errorlog", "customlog", "transferlog", "loglevel", "timeout", "keepalivetimeout", "limitrequestline",
               "limitrequestfieldsize", "limitrequestfields", "limitrequestbody", "requestreadtimeout", "logformat",
               "sslsessioncachetimeout")
MPM_TUNING = ("minsparethreads", "maxsparethreads", "threadlimit", "asyncrequestworkerfactor", "minspareservers",
              "maxspareservers", "threadstacksize", "listenbacklog", "startthreads")


def report_untranslated(ctx: Context, directives: list[Directive], inside: Directive | None = None) -> None:
    for d in directives:
        if id(d) in ctx.handled:
            continue
        ctx.handled.add(id(d))
        if d.children is not None:
            _section(ctx, d)
        else:
            _plain(ctx, d, inside)


def _section(ctx: Context, d: Directive) -> None:
    if d.name in FILE_SECTIONS:
        ctx.report.dropped(d.where, d.text(), "applies to files httpd serves itself; mpm-proxy serves none")
        mark(ctx, d.children)
        return
    if d.name in ("VirtualHost", "Location", "LocationMatch", "Proxy", "ProxyMatch"):
        report_untranslated(ctx, d.children or [], d)     # the translators took what they read
        return
    routing = _routes(d.children or [])
    why = {"If": "runtime conditions are not translated", "ElseIf": "runtime conditions are not translated",
           "Else": "runtime conditions are not translated", "Macro": "mod_macro is not expanded by the importer",
           "Limit": "per-method sections are not translated",
           "LimitExcept": "per-method sections are not translated"}.get(d.name, "this section is not translated")
    ctx.report.dropped(d.where, d.text(), why, routing=routing)
    mark(ctx, d.children)


def _plain(ctx: Context, d: Directive, inside: Directive | None) -> None:
    key = d.key
    if key in ROUTING:
        ctx.report.dropped(d.where, d.text(), ROUTING[key], routing=True)
    elif key in ACCESS:
        in_files = inside is not None and inside.name in FILE_SECTIONS
        granted = d.args.lower() in ("all granted",)
        why = "mpm-proxy does no access control (use its admin allow-list, or a firewall)"
        ctx.report.dropped(d.where, d.text(), why, routing=not (granted or in_files))
    elif key in ("rewriterule", "rewritecond") and inside is None:
        ctx.report.dropped(d.where, d.text(), "the main server's rewrite rules apply in a virtual host only with "
                                              "RewriteOptions Inherit (or the main server's InheritDown), and no "
                                              "listener is served by the main server")
    elif key in ("rewriterule", "rewritecond", "rewritebase") and inside.name != "VirtualHost":
        ctx.report.dropped(d.where, d.text(), f"rewrite rules in <{inside.name}> run after ProxyPass has chosen "
                                              "(per-directory rewriting); move them to the server or virtual host",
                           routing=key == "rewriterule")
    elif key in ("proxypassreverse", "proxypreservehost") and inside is not None:
        ctx.report.dropped(d.where, d.text(), f"mpm-proxy sets it per route; <{inside.name} {inside.args}> has no "
                                              "ProxyPass of its own")
    elif key in SERVER_WIDE and inside is not None and inside.name == "VirtualHost":
        ctx.report.dropped(d.where, d.text(), "mpm-proxy has one of these for all listeners: the main server's "
                                              "(or its default) applies")
    elif key in MPM_TUNING:
        ctx.report.dropped(d.where, d.text(), "mpm-proxy's workers are event loops without a pool of spare threads "
                                              "(see mpm.workers and mpm.threads_per_child)")
    elif key == "requestheader" and [w.lower() for w in d.words[:1]] in (["set"], ["unset"]) and len(d.words) > 1:
        why, routing = _replaced_header(d.words, ctx.client_certs)
        ctx.report.dropped(d.where, d.text(), why, routing=routing)
    elif key in REASONS:
        if key not in ("servername", "serveralias", "rewriteengine", "rewriteoptions",
                       "proxywebsocketfallbacktoproxyhttp") and not (key == "proxyrequests" and d.args.lower() == "off"):
            ctx.report.dropped(d.where, d.text(), REASONS[key], routing=key == "proxyrequests")
    else:
        ctx.report.dropped(d.where, d.text(), "no mpm-proxy equivalent")


# What worker.clientcert sets on a listener with client_ca, as mod_ssl's variables.
_CLIENT_CERT_FIELDS = {"x-ssl-client-verify": "%{SSL_CLIENT_VERIFY}s", "x-ssl-client-s-dn": "%{SSL_CLIENT_S_DN}s",
                       "x-ssl-client-i-dn": "%{SSL_CLIENT_I_DN}s", "x-ssl-client-serial": "%{SSL_CLIENT_M_SERIAL}s"}


def _replaced_header(words: list[str], client_certs: bool) -> tuple[str, bool]:
    """`RequestHeader set|unset NAME`: httpd replaces (or removes) what the client sent, so a
    backend may trust the field (an authenticated user, the client certificate's subject).
    mpm-proxy edits no headers but X-SSL-Client-*, and those only when a listener has
    client_ca (`client_certs`): then it drops every such field a client sends, and sets four
    on that listener (worker.clientcert).  (Why, and whether what the backend gets changes in
    a way that matters to who gets in.)"""
    name = words[1]
    if not client_certs or not name.lower().startswith("x-ssl-client-"):
        return f"mpm-proxy does not edit headers: the backend gets {name} as the client sent it, so a client " \
               "can forge it", True
    ours = _CLIENT_CERT_FIELDS.get(name.lower())
    if words[0].lower() == "unset":
        return f"mpm-proxy drops every X-SSL-Client-* field a client sends, {name} included", False
    if ours is not None and words[2:3] == [ours]:     # `early`, `env=...`: when, not what (review 2026-12-04 #5)
        when = f" ({' '.join(words[3:])} aside: on every request)" if words[3:] else ""
        return f"mpm-proxy sets {name} to {ours} itself on a listener with client_ca{when}", False
    if ours is not None:
        return (f"mpm-proxy sets {name} to {ours} (not {' '.join(words[2:3])}) on a listener with client_ca, "
                "and drops what a client sends"), True
    return (f"mpm-proxy drops the X-SSL-Client-* fields a client sends and sets only X-SSL-Client-Verify, -S-DN, "
            f"-I-DN and -Serial (on a listener with client_ca): the backend gets no {name}"), True


def _routes(directives: list[Directive]) -> bool:
    for d in directives:
        if d.key in ROUTING or d.key in ("proxypass", "proxypassmatch", "rewriterule") or \
                (d.key in ACCESS and d.args.lower() != "all granted"):
            return True
        if d.children and _routes(d.children):
            return True
    return False


def mark(ctx: Context, directives: list[Directive] | None) -> None:
    """Count these (and what they contain) as reported already."""
    for d in directives or []:
        ctx.handled.add(id(d))
        mark(ctx, d.children)
