"""TLS for the worker: contexts, and handshakes that never block the loop.

The contexts themselves (mod_ssl's listener certificates with SNI, SSLProxyEngine's
client settings) are built by `conf.tlscontext`, which the master uses too; they are
re-exported here for the worker's modules.  An accepted socket is wrapped without a
handshake and `ServerHandshake` drives it from epoll events under its own deadline
(`timeouts.handshake`); only then does it become an HTTP connection.

Pitfalls (measured with a prototype, see issue #6): decrypted bytes held inside an
SSLSocket are invisible to epoll, so readers drain `pending()`; a write that raised
want-write is retried with the same leading bytes; `SSLSocket.shutdown()` throws the
TLS state away, so a half-close goes through `socket.socket.shutdown`.
"""

from __future__ import annotations

import ssl

from conf.tlscontext import backend_context as backend_context  # re-exported: worker.backend uses it
from conf.tlscontext import listener_context as listener_context  # re-exported: worker.process uses it
from worker.loop import EPOLLIN, EPOLLOUT


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
        worker = self.worker
        if self.sock.session_reused:
            worker.tls_resumed += 1
        else:
            worker.tls_full += 1
        worker.handshake_done(self)

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
