"""Listen + <VirtualHost> addresses + mod_ssl -> `listen:` entries (TLS and SNI included),
and the backend TLS settings (SSLProxy*) of a server.

httpd serves a connection with the virtual hosts whose address matches the listening
socket (`*:443`, `_default_:443`, `10.0.0.1:443`, `*`); with none, the main server.
Among those, mod_ssl's SNI picks the certificate by ServerName/ServerAlias, the first
virtual host's being the default: one `listen:` entry with `tls: {cert, key, sni}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .context import Context, on_off
from .reader import Directive
from .scope import Scope

_LISTEN = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)|([0-9A-Fa-f:]*:[0-9A-Fa-f:]*)):([0-9]+)$")


@dataclass
class ListenSpec:
    directive: Directive
    host: str | None        # None: every address
    port: int

    @property
    def address(self) -> str:
        if self.host is None:
            return f"0.0.0.0:{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listens(ctx: Context, main: Scope) -> list[ListenSpec]:
    out = []
    for d in main.own("Listen"):
        ctx.take(d)
        words = d.words
        if not 1 <= len(words) <= 2:
            ctx.report.error(d.where, "Listen takes [address:]port and an optional protocol")
            continue
        text = words[0]
        if text.isdigit():
            host, port = None, int(text)
        else:
            m = _LISTEN.match(text)
            if m is None:
                ctx.report.error(d.where, f"Listen: '{text}' is not [address:]port")
                continue
            host, port = (m.group(1) or m.group(2) or m.group(3)), int(m.group(4))
        if not 0 < port < 65536:
            ctx.report.error(d.where, f"Listen: port {port} is out of range")
            continue
        spec = ListenSpec(d, None if host in ("*", "0.0.0.0") else host, port)
        first = next((o for o in out if o.address == spec.address), None)
        if first is not None:
            ctx.report.error(d.where, f"Cannot define multiple Listeners on the same IP:port ({spec.address}, "
                                      f"first at {first.directive.where})")
            continue
        out.append(spec)
    if not out:
        ctx.report.error(f"{ctx.tree_file}:1", "no Listen directive: httpd would not start (no listening sockets)")
    return out


def _vhost_address(word: str) -> tuple[str | None, int | None]:
    """'*:443' -> (None, 443); '10.0.0.1' -> ('10.0.0.1', None: any port)."""
    if word.startswith("["):
        host, _, port = word[1:].partition("]")
        port = port.lstrip(":")
    elif word.count(":") == 1:
        host, port = word.split(":")
    else:
        host, port = word, ""
    host = None if host in ("*", "_default_") else host
    return host, (int(port) if port.isdigit() else None)


def serving(listen: ListenSpec, vhosts: list[Scope]) -> list[Scope]:
    """The virtual hosts that answer on this listener, in file order.  httpd looks for the
    connection's own address first: the IP-based virtual hosts of that address take every
    connection to it, whatever the Host; only without them do the `*`/`_default_` ones
    (vhost.c find_ipaddr, then find_default_server).  A listener on every address cannot
    tell its connections apart by address: the wildcard virtual hosts serve it, or, when
    there are none, the IP-based ones (see ip_based_note)."""
    own, wildcard, other_ip = [], [], []
    for vhost in vhosts:
        kinds = {_kind(listen, word) for word in vhost.addresses}
        for kind, found in (("own", own), ("wildcard", wildcard), ("ip", other_ip)):
            if kind in kinds:
                found.append(vhost)
                break
    if listen.host is not None:
        return own or wildcard
    return wildcard or other_ip


def _kind(listen: ListenSpec, word: str) -> str | None:
    """How a <VirtualHost> address relates to a listener: 'own' (its IP), 'wildcard', 'ip'
    (another IP, on a listener for every address) or None (another port or IP)."""
    host, port = _vhost_address(word)
    if port is not None and port != listen.port:
        return None
    if host is None:
        return "wildcard"
    if listen.host is None:
        return "ip"
    return "own" if host == listen.host else None


def ip_based_note(listens: list[ListenSpec], vhost: Scope) -> str | None:
    """Why an IP-based virtual host on a listener for every address was left out, or None."""
    for spec in listens:
        word = next((w for w in vhost.addresses if spec.host is None and _kind(spec, w) == "ip"), None)
        if word is not None:
            return (f"httpd serves it only for connections to {word}, and the other virtual hosts on "
                    f"{spec.address} for the rest; mpm-proxy's routes do not depend on the address a "
                    f"connection reached: give it a listener of its own (Listen {word})")
    return None


def unserved(listens: list[ListenSpec], vhost: Scope) -> tuple[str, bool]:
    """Why no listener is served by `vhost`, and whether that changes where requests go."""
    why = ip_based_note(listens, vhost)
    if why is not None:
        return why, True
    taken = next((s for s in listens for w in vhost.addresses if _kind(s, w) == "wildcard"), None)
    if taken is not None:
        return (f"the IP-based virtual hosts of {taken.address} take every connection to it, so httpd never "
                "uses it"), False
    return "no Listen matches its address, so httpd never uses it", False


def ssl_on(ctx: Context, scope: Scope) -> bool:
    d = scope.last("SSLEngine")
    if d is None:
        return False
    ctx.take(d)
    value = d.words[0].lower() if d.words else ""
    return value in ("on", "optional") or (value != "off" and on_off(d, ctx.report) is True)


def tls_section(ctx: Context, group: list[Scope]) -> dict | None:
    """`tls:` of a listener served by `group` (its first member is the default), or None."""
    secured = [s for s in group if ssl_on(ctx, s)]
    if not secured:
        return None
    if len(secured) != len(group):
        plain = next(s for s in group if s not in secured)
        ctx.report.warn(plain.vhost.where if plain.vhost else "", f"{plain.label} has no SSLEngine On but shares "
                        "a TLS listener; mpm-proxy serves it over TLS with the default certificate")
    pairs = [(s, _cert_pair(ctx, s)) for s in secured]
    default = pairs[0][1]
    if default is None:
        return None
    tls: dict = {"cert": default[0], "key": default[1]}
    sni = {}
    for scope, pair in pairs:
        for name in scope.names:
            if pair is None or name in sni:
                continue
            if "*" in name or "?" in name:
                ctx.report.dropped(scope.vhost.where, f"ServerAlias {name}", "mpm-proxy's SNI matches exact names; "
                                   "this name gets the default certificate")
                continue
            sni[name] = {"cert": pair[0], "key": pair[1]}
    if sni and any(v != {"cert": tls["cert"], "key": tls["key"]} for v in sni.values()):
        tls["sni"] = sni
    client_ca = _listener_client_ca(ctx, secured)
    if client_ca:
        tls["client_ca"] = client_ca
    return tls


def _listener_client_ca(ctx: Context, secured: list[Scope]) -> str | None:
    """The listener's client_ca from every virtual host's SSLVerifyClient, not the default's
    alone.  httpd checks client certificates per virtual host and answers 421 to a request
    whose Host selects a virtual host with other TLS settings than the SNI name chose
    (ssl_hook_ReadReq, AH02032), so an open site's clients never reach a guarded one.
    mpm-proxy's client_ca guards a whole listener: taking the default's alone would open the
    guarded site to everyone, so one that requires certificates makes the listener require
    them (refusing clients httpd serves, never serving clients httpd refuses)."""
    wanted = [(scope, _client_ca(ctx, scope)) for scope in secured]
    files = {ca for _, ca in wanted if ca}
    if not files:
        return None
    guard = next(scope for scope, ca in wanted if ca)
    if len(files) > 1:
        ctx.report.error(guard.vhost.where if guard.vhost else f"{ctx.tree_file}:1",
                         "virtual hosts of one TLS listener require client certificates from different "
                         "SSLCACertificateFile files; mpm-proxy's client_ca is one per listener: give each its own "
                         "Listen port, or one CA file that holds both")
        return None
    for scope, ca in wanted:
        if not ca:
            ctx.report.warn(scope.vhost.where if scope.vhost else f"{ctx.tree_file}:1",
                            f"{scope.label} has no SSLVerifyClient require but shares a TLS listener with "
                            f"{guard.label}, which has: mpm-proxy requires client certificates per listener, so "
                            "its clients need one too (give it its own Listen port to keep httpd's behaviour)",
                            routing=True)
    return files.pop()


def _cert_pair(ctx: Context, scope: Scope) -> tuple[str, str] | None:
    cert, key = scope.last("SSLCertificateFile"), scope.last("SSLCertificateKeyFile")
    for d in scope.chain("SSLCertificateFile", "SSLCertificateKeyFile"):
        ctx.take(d)
    if cert is None or not cert.words:
        where = scope.vhost.where if scope.vhost else f"{ctx.tree_file}:1"
        ctx.report.error(where, f"SSLEngine is On for {scope.label} but it has no SSLCertificateFile")
        return None
    cert_path = ctx.path(cert.words[0])
    key_path = ctx.path(key.words[0]) if key is not None and key.words else cert_path
    return cert_path, key_path


def _client_ca(ctx: Context, scope: Scope) -> str | None:
    verify, ca = scope.last("SSLVerifyClient"), scope.last("SSLCACertificateFile")
    for d in (verify, ca):
        if d is not None:
            ctx.take(d)
    if verify is None or not verify.words or verify.words[0].lower() == "none":
        return None
    if verify.words[0].lower() != "require" or ca is None:
        ctx.report.dropped(verify.where, verify.text(), "mpm-proxy requires client certificates (require) "
                           "checked against an SSLCACertificateFile, or none", routing=True)
        return None
    return ctx.path(ca.words[0])


def backend_tls(ctx: Context, scope: Scope, d: Directive) -> dict | None:
    """`tls:` for an https/wss target of `scope`: SSLProxyEngine, SSLProxyVerify (httpd's
    default: none), SSLProxyCheckPeerName (default On), SSLProxyCACertificateFile."""
    engine, verify, ca, name = (scope.last(n) for n in ("SSLProxyEngine", "SSLProxyVerify",
                                                         "SSLProxyCACertificateFile", "SSLProxyCheckPeerName"))
    for x in (engine, verify, ca, name):
        if x is not None:
            ctx.take(x)
    if engine is None or on_off(engine, ctx.report) is not True:
        ctx.report.warn(d.where, "an https/wss backend without SSLProxyEngine On: httpd answers these requests "
                        "with 500; mpm-proxy will proxy them over TLS", routing=True)
    level = verify.words[0].lower() if verify is not None and verify.words else "none"
    check_name = name is None or (name.words[:1] != ["off"] and name.words[:1] != ["Off"])
    if level in ("none", "optional_no_ca"):
        if check_name:
            ctx.report.warn(d.where, "httpd checks this backend's certificate name (SSLProxyCheckPeerName On) but "
                            "not its issuer (SSLProxyVerify none); mpm-proxy checks both or neither: translated "
                            "as neither (verify: false); set SSLProxyVerify require with a CA to check both")
        return {"verify": False}
    if ca is not None and ca.words:
        return {"ca": ctx.path(ca.words[0])}
    return {}
