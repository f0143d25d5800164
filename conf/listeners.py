"""The `listen` section: addresses, HTTP/2 (ALPN or h2c), TLS certificates (SNI, client CAs)
and the PROXY protocol, as `conf.model.Listener`s (part of load_config)."""

from __future__ import annotations

from dataclasses import replace

from .addresses import parse_listen
from .fields import Errors, Section, describe, did_you_mean
from .model import CertFiles, Listener, ListenerTLS
from .tlsfiles import ca_problem, cert_key_problem, unreadable
from .yamlnodes import Map, Scalar

LISTEN_KEYS = ("address", "tls", "http2", "proxy_protocol")
HTTP2_VALUES = ("true", "false", "h2c")
LISTEN_TLS_KEYS = ("cert", "key", "sni", "client_ca")


def build_listeners(top: Section) -> tuple[Listener, ...]:
    """The `listen` section: its listeners, each once."""
    if "listen" not in top:
        top.errors.add(1, "no 'listen' section: at least one listener (e.g. \"127.0.0.1:8080\") is needed")
        return ()
    items = top.sequence("listen")
    if items is None:
        return ()
    if not items:
        top.error("listen", "listen is empty: at least one listener (e.g. \"127.0.0.1:8080\") is needed")
    listeners: list[Listener] = []
    first_at: dict[tuple[str, int], int] = {}
    for item in items:
        listener = _listener(top.errors, item)
        if listener is None:
            continue
        if listener.address in first_at:
            top.errors.add(listener.line, f"duplicate listener {listener} (first at line {first_at[listener.address]})")
            continue
        first_at[listener.address] = listener.line
        listeners.append(listener)
    return tuple(listeners)


def _listener(errors: Errors, item) -> Listener | None:
    tls, http2 = None, None
    proxy_protocol = False
    if isinstance(item, Scalar) and isinstance(item.value, str):
        text, line = item.value, item.line
    elif isinstance(item, Map):
        sec = Section(errors, item, "listen", LISTEN_KEYS)
        if not sec.require("address"):
            return None
        text, line = sec.string("address"), sec.line("address")
        http2 = _http2(sec)
        proxy_protocol = bool(sec.boolean("proxy_protocol", False))
        if "tls" in sec:
            tls = _listener_tls(sec.mapping("tls", "listen.tls", LISTEN_TLS_KEYS))
            if tls is None:
                return None
        if text is None or http2 is False:
            return None
    else:
        errors.add(item.line, f"each listen entry must be a \"HOST:PORT\" string or a mapping with 'address', "
                              f"got {describe(item)}")
        return None
    try:
        host, port, family = parse_listen(text)
    except ValueError as exc:
        errors.add(line, str(exc))
        return None
    protocols = _protocols(sec if http2 else None, http2, tls is not None)
    if protocols is None:
        return None
    if protocols == "h2":
        tls = replace(tls, alpn=("h2", "http/1.1"))
    return Listener(host, port, family, tls, line, protocols, proxy_protocol)


def _http2(sec: Section) -> str | bool | None:
    """listen.http2 as written: "true", "false", "h2c"; None when absent, False when invalid."""
    if "http2" not in sec:
        return None
    value = sec.raw("http2").value if isinstance(sec.raw("http2"), Scalar) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in HTTP2_VALUES:
        return value
    shown = f"'{value}'{did_you_mean(value, HTTP2_VALUES)}" if isinstance(value, str) else describe(sec.raw("http2"))
    sec.error("http2", f"listen.http2 must be true, false or h2c; got {shown}")
    return False


def _protocols(sec: Section | None, http2: str | None, tls: bool) -> str | None:
    """What the listener speaks besides HTTP/1.1 (Listener.http2): TLS listeners offer h2 by
    ALPN unless told not to; cleartext HTTP/2 (h2c, prior knowledge) only when asked."""
    if http2 is None:
        return "h2" if tls else ""
    if http2 == "false":
        return ""
    if http2 == "true" and not tls:
        sec.error("http2", "listen.http2: true needs tls (browsers negotiate HTTP/2 by ALPN); for cleartext "
                           "HTTP/2 with prior knowledge write http2: h2c")
        return None
    if http2 == "h2c" and tls:
        sec.error("http2", "listen.http2: h2c is cleartext HTTP/2 for plain listeners; a TLS listener "
                           "negotiates h2 by ALPN (http2: true, the default)")
        return None
    return "h2" if tls else "h2c"


def _listener_tls(sec: Section | None) -> ListenerTLS | None:
    """SSLCertificateFile/KeyFile, per-name pairs for SNI, SSLCACertificateFile for client certs."""
    if sec is None:
        return None
    errors_before = len(sec.errors)
    default = _cert_pair(sec)
    sni: dict[str, CertFiles] = {}
    names = sec.mapping("sni", "listen.tls.sni", None)
    for name, entry in names.entries() if names else ():
        server_name = name.lower().rstrip(".")
        if server_name in sni:
            sec.errors.add(entry.key_line, f"listen.tls.sni names '{name}' twice")
            continue
        pair_sec = Section.of(sec.errors, entry.value, f"listen.tls.sni.{name}", ("cert", "key"))
        pair = _cert_pair(pair_sec) if pair_sec else None
        if pair is not None:
            sni[server_name] = pair
    client_ca = sec.path("client_ca", None)
    if client_ca is not None:
        problem = unreadable(client_ca) or ca_problem(client_ca)
        if problem:
            sec.error("client_ca", f"listen.tls.client_ca: {problem}")
    if default is None or len(sec.errors) > errors_before:
        return None
    return ListenerTLS(default.cert, default.key, sni, client_ca)


def _cert_pair(sec: Section) -> CertFiles | None:
    has_both = sec.require("cert") & sec.require("key")   # & not and: report both when both are missing
    cert, key = sec.path("cert", None), sec.path("key", None)
    if not has_both or cert is None or key is None:
        return None
    missing = False
    for field, path in (("cert", cert), ("key", key)):
        problem = unreadable(path)
        if problem:
            sec.error(field, f"{sec.name(field)}: {problem}")
            missing = True
    if missing:
        return None
    problem = cert_key_problem(cert, key)
    if problem:
        sec.error("cert", f"{sec.label}: {problem}")
        return None
    return CertFiles(cert, key)
