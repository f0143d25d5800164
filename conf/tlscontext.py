"""SSL contexts from the TLS settings: what the master builds before it forks and what a
worker builds for itself, made the same way in both.

The master makes each listener's context before forking a generation, so the generation's
workers share one session-ticket key and a client resumes its TLS session on whichever
worker it reaches next (nginx makes its ticket keys in the master for the same reason); its
health checks make backend contexts with the verification the workers apply.  Server side:
TLS 1.2 minimum, ALPN `h2` then `http/1.1` (or `http/1.1` alone: the listener's `http2`), SNI choosing among the listener's named certificates,
optional client certificates.  Client side: the system CAs or `tls.ca`, SNI and host-name
check against the target (or `server_name`); `verify: false` turns both off.
"""

from __future__ import annotations

import ssl


def _server_context(cert: str, key: str, client_ca: str | None, alpn: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(list(alpn))
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def listener_context(tls) -> ssl.SSLContext:
    """The default context of a listener (`ListenerTLS`), with SNI choosing among its named certificates."""
    default = _server_context(tls.cert, tls.key, tls.client_ca, tls.alpn)
    by_name = {name.lower(): _server_context(files.cert, files.key, tls.client_ca, tls.alpn)
               for name, files in tls.sni.items()}
    if by_name:
        def choose(sslobj, server_name, _context):
            chosen = by_name.get((server_name or "").lower())
            if chosen is not None:
                sslobj.context = chosen
            return None
        default.sni_callback = choose
    return default


_client_contexts: dict = {}


def backend_context(settings) -> ssl.SSLContext:
    """One client context per distinct `BackendTLS`, kept for the life of the process."""
    context = _client_contexts.get(settings)
    if context is None:
        context = ssl.create_default_context(cafile=settings.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        if not settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _client_contexts[settings] = context
    return context
