"""TLS for the worker: contexts, and handshakes that never block the loop.

Server side (mod_ssl): one context per listener certificate, the SNI callback swaps in
the context for the name the client asked for, TLS 1.2 minimum, ALPN `http/1.1`,
optional client-certificate verification.  An accepted socket is wrapped without a
handshake and `ServerHandshake` drives it from epoll events under its own deadline
(`timeouts.handshake`); only then does it become an HTTP connection.

Client side (SSLProxyEngine): one context per distinct `BackendTLS` setting, with the
system CAs or the configured CA file, SNI and host-name check against the target (or
`server_name`); `verify: false` turns both off (the master warns about it at start).

Pitfalls (measured with a prototype, see issue #6): decrypted bytes held inside an
SSLSocket are invisible to epoll, so readers drain `pending()`; a write that raised
want-write is retried with the same leading bytes; `SSLSocket.shutdown()` throws the
TLS state away, so a half-close goes through `socket.socket.shutdown`.
"""

from __future__ import annotations

import ssl

from worker.loop import EPOLLIN, EPOLLOUT


def _server_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def listener_context(tls) -> ssl.SSLContext:
    """The default context of a listener, with SNI choosing among its named certificates."""
    default = _server_context(tls.cert, tls.key, tls.client_ca)
    by_name = {name.lower(): _server_context(files.cert, files.key, tls.client_ca)
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


def handshake_step(sock: ssl.SSLSocket) -> int:
    """Advance a non-blocking handshake: 0 when done, else the epoll interest it waits for.
    Raises ssl.SSLError / OSError when it fails."""
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return EPOLLIN
    except ssl.SSLWantWriteError:
        return EPOLLOUT
    return 0


def describe(exc: BaseException) -> str:
    """A log-worthy reason: 'certificate has expired', 'Hostname mismatch ...', 'wrong version number'."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


class ServerHandshake:
    """An accepted TLS connection until its handshake completes."""

    __slots__ = ("worker", "loop", "sock", "fd", "client_ip", "deadline", "mask")

    def __init__(self, worker, sock: ssl.SSLSocket, client_ip: bytes):
        self.worker = worker
        self.loop = loop = worker.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip
        self.deadline = loop.now + worker.timeouts.handshake
        self.mask = EPOLLIN
        loop.add(self.fd, EPOLLIN, self.on_event)
        loop.timed.add(self)

    def on_event(self, mask: int) -> None:
        try:
            wanted = handshake_step(self.sock)
        except (ssl.SSLError, OSError) as exc:
            self.fail(describe(exc))
            return
        if wanted:
            if wanted != self.mask:
                self.loop.modify(self.fd, wanted)
                self.mask = wanted
            return
        self.loop.timed.discard(self)
        self.loop.remove(self.fd)
        self.worker.handshake_done(self)

    def on_deadline(self) -> None:
        self.fail("handshake timed out")

    def fail(self, why: str) -> None:
        self.worker.log_error("info", f"{self.client_ip.decode()} TLS handshake failed: {why}")
        self.worker.handshake_failed()
        self.close()

    def close(self) -> None:
        self.worker.handshakes.discard(self)
        self.loop.timed.discard(self)
        self.loop.remove(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
        self.worker.connection_closed()
