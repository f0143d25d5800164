"""TLS for the worker: contexts, and handshakes that never block the loop.

The contexts themselves (mod_ssl's listener certificates with SNI, SSLProxyEngine's
client settings) are built by `conf.tlscontext`, which the master uses too; they are
re-exported here for the worker's modules.  An accepted socket is wrapped without a
handshake and `ServerHandshake` drives it from epoll events under its own deadline
(`timeouts.handshake`); only then does it become an HTTP connection.

What a TLS accept costs besides OpenSSL's own work (issue #20, measured with callgrind and
strace, TLS 1.3, resuming): `SSLContext.wrap_socket` builds the SSLSocket through a second
socket object, asks the kernel for its type, its name and its peer and sets its timeout
(4 system calls and about 10 µs of Python); `SSLSocket.do_handshake` sets the timeout again
on every call (one more ioctl per round).  So the SSLSocket is made here from the accepted
descriptor with the same attributes `SSLSocket._create` gives it (checked once against
`wrap_socket` itself; on any difference, `wrap_socket` is used), the handshake is driven on
the SSL object directly, and it is tried at once: a client's ClientHello is usually
waiting by the time it is accepted, so its first round needs no turn of the loop.  Each
round runs in C where conf/_readahead.c is built (`handshake`): CPython raises
SSLWantReadError for a round that has to wait, which a resumed TLS 1.3 connection's first
round always does, and that exception cost about 3.5 µs (timeit).  Together with the accept
in C (worker/_accept.c): 592-599 µs of a saturated worker per resumed connection against
604-610 before, nginx 563-569 (bench/RESULTS-2026-12-05-accept.md).

Pitfalls (measured with a prototype, see issue #6): decrypted bytes held inside an
SSLSocket are invisible to epoll, so readers drain what `conf.readahead.buffered` sees
(listeners read ahead: one read() per burst of records, see there); a write that raised
want-write is retried with the same leading bytes; `SSLSocket.shutdown()` throws the
TLS state away, so a half-close goes through `socket.socket.shutdown`.
"""

from __future__ import annotations

import _socket
import os
import re
import socket
import ssl

from conf import readahead
from conf.tlscontext import backend_context as backend_context  # re-exported: worker.backend uses it
from conf.tlscontext import listener_context as listener_context  # re-exported: worker.process uses it
from worker.arrival import Arrival
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
    """A log-worthy reason: 'certificate has expired', 'Hostname mismatch ...', 'wrong version number',
    'peer closed the connection' (nginx: "peer closed connection in SSL handshake"), without
    the place in CPython's source that CPython's own message ends with."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, _CLOSED):
        return "peer closed the connection"
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or _SOURCE_PLACE.sub("", str(exc))
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


_CLOSED = (ssl.SSLZeroReturnError, ssl.SSLEOFError)     # an EOF, as OP_IGNORE_UNEXPECTED_EOF reports it too
_SOURCE_PLACE = re.compile(r" \(_ssl\.c:\d+\)$")


class ServerHandshake(Arrival):
    """An accepted TLS connection until its handshake completes."""

    __slots__ = ("worker", "loop", "sock", "sslobj", "fd", "client_ip", "holds", "since", "deadline", "mask")

    def __init__(self, worker, sock, client_ip: bytes, context: ssl.SSLContext, holds=()):
        self.worker = worker
        self.holds = holds            # its count in the client table (worker.admission), to its connection next
        self.loop = loop = worker.loop
        self.sock = tls = sock if sock.__class__ is _SSLSocket else server_socket(context, sock)
        self.sslobj = tls._sslobj
        self.fd = tls.fileno()
        self.client_ip = client_ip
        self.since = now = loop.now      # (worker.arrival)
        self.deadline = now + worker.timeouts.handshake
        self.mask = 0                 # not in epoll until a round has to wait
        worker.handshakes.add(self)
        loop.timed.add(self)
        if self.sslobj is None:       # `wrap_socket` (accepted_socket's fallback) found it reset already
            self.fail("peer closed the connection")
            return
        self.on_event(EPOLLIN)

    def on_event(self, mask: int) -> None:
        try:
            wanted = _round(self.sslobj)
        except (ssl.SSLError, OSError) as exc:      # a round in Python raises what failed
            self.fail(describe(exc))
            return
        if wanted:
            if wanted > 0:
                self._wait(wanted)
            else:                                     # a round in C leaves it to be raised
                self.fail(failed_round(self.sslobj, wanted))
            return
        loop = self.loop
        loop.timed.discard(self)
        worker = self.worker
        resumed = self.sslobj.session_reused
        if not self.mask:
            worker.handshake_done(self, resumed)
            return
        loop.pass_on(self.fd, self.mask, self.sock)     # the client connection takes it as it is
        try:
            worker.handshake_done(self, resumed)
        finally:
            loop.passed_on(self.fd)

    def _wait(self, wanted: int) -> None:
        if not self.mask:
            self.loop.add(self.fd, wanted, self.on_event)
        elif wanted != self.mask:
            self.loop.modify(self.fd, wanted)
        self.mask = wanted

    def on_deadline(self) -> None:
        self.fail("handshake timed out")

    def fail(self, why: str) -> None:
        handshake_failed(self.worker, self.client_ip, why)
        self.close()


def handshake_failed(worker, client_ip: bytes, why: str) -> None:
    """A handshake that failed, logged and counted (its connection is closed next)."""
    worker.log_error("info", f"{client_ip.decode()} TLS handshake failed: {why}")
    worker.handshake_failed()


# == one handshake round ======================================================================
def _round_in_python(sslobj) -> int:
    """What conf/_readahead.c's `handshake` answers, where it is not built: 0 done, or the
    epoll interest to wait for; a failure raises (SSLError, OSError)."""
    try:
        sslobj.do_handshake()
    except _WANT_READ:
        return EPOLLIN
    except _WANT_WRITE:
        return EPOLLOUT
    return 0


def failed_round(sslobj, answer: int) -> str:
    """Why a round in C failed: the peer's close_notify (it answered -2), or what OpenSSL still
    holds (-1), which the handshake called again through CPython raises as CPython would have."""
    if answer == -2:
        return describe(ssl.SSLZeroReturnError())
    try:
        sslobj.do_handshake()
    except (_WANT_READ, _WANT_WRITE):
        return "no reason given"
    except (ssl.SSLError, OSError) as exc:
        return describe(exc)
    return "no reason given"


# MPM_NATIVE_ACCEPT=0 (README): a connection's arrival in Python, its accept (worker.acceptor)
# and its handshake rounds; else the round in C (conf/_readahead.c) where it is built.
NATIVE_ACCEPT = os.environ.get("MPM_NATIVE_ACCEPT", "1") != "0"
_round = readahead.handshake if readahead.handshake and NATIVE_ACCEPT else _round_in_python


# == the SSLSocket of an accepted connection, made in one step =================================
_WANT_READ, _WANT_WRITE = ssl.SSLWantReadError, ssl.SSLWantWriteError
_SSLSocket = ssl.SSLSocket
_socket_init = socket.socket.__init__
_fast = None                  # None: not checked yet; then True or False
# What `SSLSocket._create` gives every server-side SSLSocket of ours besides its context and its
# SSL object (`accepted_socket`; the slots `_io_refs` and `_closed` are socket.socket.__init__'s).
_SERVER_SIDE = {"_session": None, "server_side": True, "server_hostname": None, "do_handshake_on_connect": False,
                "suppress_ragged_eofs": True, "_connected": True}
_made_in_c = None             # worker/_accept.c's `tls_socket`, where it is built (MPM_NATIVE_ACCEPT=0: not used)
if NATIVE_ACCEPT:
    try:
        from worker import _accept
    except ImportError:
        pass
    else:
        _accept.install_tls(_SSLSocket, _socket.socket, _SERVER_SIDE)
        _made_in_c = _accept.tls_socket


def server_socket(context: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    """`context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)` for a
    connected, non-blocking socket, without the system calls it makes only to find out
    what the acceptor already knows."""
    family, kind, proto = sock.family, sock.type, sock.proto
    return accepted_socket(context, sock.detach(), family, kind | socket.SOCK_NONBLOCK, proto)


def accepted_socket(context: ssl.SSLContext, fd: int, family: int, kind: int, proto: int) -> ssl.SSLSocket:
    """The SSLSocket for a non-blocking descriptor straight from accept(), made without a
    plain socket object first: one getsockname (CPython's check of any descriptor it is
    given) per connection instead of two, and two ioctls fewer.  `kind` carries
    SOCK_NONBLOCK, which tells CPython that the descriptor is non-blocking already.
    Made in C where worker/_accept.c is built (the same steps: about 80 bytecodes fewer per
    connection), else here; either way checked once against `wrap_socket` itself."""
    global _fast
    if _fast is None:
        _fast = _same_as_wrap_socket(context)
    if not _fast:
        try:
            sock = socket.socket(family, kind, proto, fd)
        except OSError:
            os.close(fd)
            raise
        return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    if _made_in_c is not None:
        return _made_in_c(fd, family, kind, proto, context)
    tls = _SSLSocket.__new__(_SSLSocket)
    try:
        _socket_init(tls, family, kind, proto, fd)     # a timeout of 0 (SOCK_NONBLOCK)
    except OSError:
        os.close(fd)
        raise
    vars(tls).update(_SERVER_SIDE)
    tls._context = context
    try:
        tls._sslobj = context._wrap_socket(tls, True, None, owner=tls, session=None)
    except (ssl.SSLError, OSError, MemoryError):
        tls.close()
        raise
    return tls


def _same_as_wrap_socket(context: ssl.SSLContext) -> bool:
    """Whether this Python's SSLSocket gets from `wrap_socket` exactly the attributes that
    `server_socket` sets: checked once per process on a socket pair."""
    pairs = [socket.socketpair(), socket.socketpair()]
    try:
        for pair in pairs:
            pair[0].setblocking(False)
        global _fast
        _fast = True
        ours = server_socket(context, pairs[0][0])
        theirs = context.wrap_socket(pairs[1][0], server_side=True, do_handshake_on_connect=False)
        same = (vars(ours).keys() == vars(theirs).keys() and ours.gettimeout() == theirs.gettimeout()
                and type(ours._sslobj) is type(theirs._sslobj))
        ours.close()
        theirs.close()
        return same
    except (AttributeError, TypeError, ValueError, OSError):
        return False
    finally:
        for pair in pairs:
            for end in pair:
                end.close()
