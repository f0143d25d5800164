"""SSL contexts from the TLS settings: what the master builds before it forks and what a
worker builds for itself, made the same way in both.

The master makes each listener's context before forking a generation and hands it the
session-ticket keys of `shm.ticketkeys` (through `conf.openssl`'s ticket callback), so a
client resumes its TLS session on whichever worker, generation or master it reaches next;
its health checks make backend contexts with the verification the workers apply.  Each
listener's sessions are its own (a session-id context made from its certificate and
client-CA files, and the client-CA file's contents), and no server-side session store is kept: tickets carry the sessions.
Server side:
TLS 1.2 minimum, ALPN `h2` then `http/1.1` (or `http/1.1` alone: the listener's `http2`), SNI choosing among the listener's named certificates,
optional client certificates.  Client side: the system CAs or `tls.ca`, SNI and host-name
check against the target (or `server_name`); `verify: false` turns both off.
"""

from __future__ import annotations

import hashlib
import ssl

from conf import openssl, readahead, tlsfiles


def _server_context(cert: str, key: str, client_ca: str | None, alpn: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A client's FIN without close_notify is its EOF, as on a plain connection: OpenSSL 3
    # would otherwise fail the connection with a decode_error alert, and a request sent
    # just before the FIN would get no answer.  Requests and WebSocket frames carry their
    # own framing, so nothing truncated passes for complete.  (Backend contexts are left as
    # OpenSSL makes them.)
    context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(list(alpn))
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    readahead.enable(context)
    return context


class CertificateFilesError(Exception):
    """A listener's certificate, key or client-CA file could not be loaded into its context:
    one that changed since `load_config` checked it (a renewal landing mid-reload).  Not an
    OSError, so it is never taken for OpenSSL being out of reach (`conf.openssl`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.listener = None      # set by whoever knows which listener it was


def listener_context(tls, tickets=None, ciphersuites: str = openssl.TLS13_CIPHERSUITES,
                     session_timeout: float = 300.0) -> ssl.SSLContext:
    """The default context of a listener (`ListenerTLS`), with SNI choosing among its named
    certificates.  `tickets` (a `shm.ticketkeys.TicketKeyRing`) decides the ticket keys;
    None leaves OpenSSL's random key of this context.  Raises OSError when OpenSSL cannot
    be reached for that (`conf.openssl.available()` says why beforehand).  Sessions resume
    for `session_timeout` seconds (the tickets' lifetime; OpenSSL's default is 7200)."""
    try:
        default = _server_context(tls.cert, tls.key, tls.client_ca, tls.alpn)
        by_name = {name.lower(): _server_context(files.cert, files.key, tls.client_ca, tls.alpn)
                   for name, files in tls.sni.items()}
    except OSError as exc:       # ssl.SSLError too
        raise CertificateFilesError(_files_problem(tls) or str(exc)) from exc
    contexts = (default, *by_name.values())
    if not openssl.available():
        for context in contexts:
            openssl.set_tls13_ciphersuites(context, ciphersuites)
            openssl.set_session_timeout(context, session_timeout)
    if tickets is not None:
        try:
            digest = _contents(tls.client_ca)
        except OSError as exc:       # removed since it was loaded above (an rm + cp renewal)
            raise CertificateFilesError(_files_problem(tls) or str(exc)) from exc
        identity = repr((tls.cert, tls.key, tls.client_ca, digest,
                         sorted((n, f.cert, f.key) for n, f in tls.sni.items())))
        for context in contexts:
            openssl.isolate(context, identity.encode())
            openssl.install_ticket_keys(context, tickets)
    if by_name:
        def choose(sslobj, server_name, _context):
            chosen = by_name.get((server_name or "").lower())
            if chosen is not None:
                sslobj.context = chosen
            return None
        default.sni_callback = choose
    return default


def _files_problem(tls) -> str | None:
    """What is wrong with a listener's files, worded as conf.loader words it."""
    pairs = [(tls.cert, tls.key), *((files.cert, files.key) for files in tls.sni.values())]
    for cert, key in pairs:
        problem = tlsfiles.unreadable(cert) or tlsfiles.unreadable(key) or tlsfiles.cert_key_problem(cert, key)
        if problem:
            return problem
    if tls.client_ca:
        return tlsfiles.unreadable(tls.client_ca) or tlsfiles.ca_problem(tls.client_ca)
    return None


def _contents(path: str | None) -> str | None:
    """A digest of the client-CA file for the session-id context: the ticket keys outlive a
    reload, and a session carries the verdict on the client certificate it began with, so
    with only the path in the context, a CA removed from the file at a reload would still
    admit the sessions it had vouched for (TLS 1.3 renews them at every resumption)."""
    if path is None:
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


_client_contexts: dict = {}


def backend_context(settings) -> ssl.SSLContext:
    """One client context per distinct `BackendTLS`, kept until `forget_backend_contexts()`."""
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


def forget_backend_contexts() -> None:
    """At a reload, in the master, before the next generation forks: `BackendTLS` names its CA
    file by path, so a context kept across the reload would go on trusting the CA that file
    held before (in the master's health checks, and in every worker it forks, which inherit
    its contexts), although the operator rewrote the file for this reload."""
    _client_contexts.clear()
