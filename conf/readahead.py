"""TLS read-ahead on the listeners, and the check every TLS reader uses instead of `pending()`.

Why: without read-ahead OpenSSL reads each TLS record with two read() calls (its 5-byte header,
then its body).  A resumed TLS 1.3 connection carrying one request took 9 reads in a worker
against nginx's 4 (nginx turns read-ahead on; strace of one worker under wrk, one request per
connection), and every record of a TLS keep-alive connection or a wss tunnel took two.  With
read-ahead, one read() takes what the kernel holds.

The catch: records read ahead wait undecrypted in OpenSSL's buffer, invisible to epoll, and
`SSLSocket.pending()` (decrypted bytes only) does not count them.  So every reader of a TLS
socket asks `buffered(sock)` instead, which counts both (conf/_readahead.c, which also says
why it cannot spin on a partial record).  It is installed at import, checked first on a live
SSL object, and `enable` turns read-ahead on only where it is installed; where the C module was
not built (no compiler at install), or MPM_TLS_READ_AHEAD=0, `buffered` is `pending()` and
OpenSSL reads as before.  Client contexts (to TLS backends) are left as OpenSSL makes them:
what they carry is a response per request, not the handshake-plus-request burst of a client.

The same C module writes the close_notify every TLS endpoint owes before it closes or half-closes
(`close_notify`, called by `tunnel.endpoint.Endpoint`), without reading for the peer's, and runs
a server handshake's rounds without the exception CPython raises for a round that waits
(`handshake`, called by `worker.tls.ServerHandshake`; None where the module is not built).
"""

from __future__ import annotations

import ctypes
import os
import ssl

from conf import openssl

_SSL_CTRL_SET_READ_AHEAD = 41
_SSL_CTRL_GET_READ_AHEAD = 40
_SSL_CTRL_MODE = 33
_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 2
# CPython's PySSLSocket (3.10-3.13): the object header, a weak reference to the socket, the SSL*.
_SSL_OFFSET = object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)

buffered = ssl.SSLSocket.pending      # until _install() below replaces it


def _no_close_notify(sock) -> None:
    """Without the C module no close_notify is sent: CPython's SSLObject.shutdown() would read
    for the peer's too, and eat what a half-closed tunnel still has to relay."""


close_notify = _no_close_notify       # until _install() below replaces it
ssl_pointer = None                    # sslobj -> its SSL*, once its offset is checked (`_install`)
handshake = None                      # sslobj -> one server handshake round (_readahead.c), once installed


def _install() -> str | None:
    """Put the C functions in place; None when read-ahead can be turned on, else why not."""
    global buffered, close_notify, ssl_pointer, handshake
    lib = openssl._lib
    if lib is None:
        return openssl.available()
    try:
        from conf import _readahead
    except ImportError:
        return "conf._readahead was not built (no C compiler at install)"
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        probe = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
        functions = [ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                     for name in ("SSL_pending", "SSL_has_pending", "SSL_want")]
        _readahead.install(*functions, type(probe._sslobj), _SSL_OFFSET)
        lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        if lib.SSL_get_SSL_CTX(_readahead.ssl_pointer(probe._sslobj)) != openssl.ssl_ctx(context):
            return "the SSL object is not laid out as expected"
        _readahead.install_shutdown(*[ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in
                                      ("SSL_shutdown", "SSL_is_init_finished", "ERR_clear_error")])
        close_notify = _readahead.close_notify
        _readahead.install_handshake(*[ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in
                                       ("SSL_do_handshake", "SSL_get_error")])
        if _readahead.buffered(probe._sslobj):      # a fresh object holds nothing
            return "SSL_has_pending answers for an empty SSL object"
        ssl_pointer = _readahead.ssl_pointer
        handshake = _readahead.handshake
    except (AttributeError, TypeError, ValueError, OSError) as exc:
        return f"SSL_has_pending cannot be reached: {exc}"
    if os.environ.get("MPM_TLS_READ_AHEAD", "1") == "0":
        return "MPM_TLS_READ_AHEAD=0"
    buffered = _readahead.buffered
    return None


_why_not = _install()


def why_not() -> str | None:
    """None when listeners read ahead; else why they do not."""
    return _why_not


def give_tls_io(install) -> bool:
    """Hand `install` (worker._lane.install_tls) the OpenSSL functions a TLS connection's reads
    and writes take, from the libssl CPython's _ssl uses; False where the SSL* of an SSLSocket
    cannot be reached (then no C code may touch one)."""
    if ssl_pointer is None or not _moving_writes():
        return False
    install(*[ctypes.cast(getattr(openssl._lib, name), ctypes.c_void_p).value for name in
              ("SSL_read", "SSL_write", "SSL_get_error", "SSL_pending", "SSL_has_pending", "SSL_want",
               "ERR_clear_error", "SSL_do_handshake", "SSL_session_reused")])
    return True


def _moving_writes() -> bool:
    """Whether CPython's SSL objects take a write retried from another buffer (it sets
    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER on each): the lane keeps what a write could not send
    in a buffer of its own and retries from there."""
    lib = openssl._lib
    lib.SSL_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_ctrl.restype = ctypes.c_long
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    return bool(lib.SSL_ctrl(ssl_pointer(probe._sslobj), _SSL_CTRL_MODE, 0, None) & _SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)


def enable(context: ssl.SSLContext) -> None:
    """Read-ahead for the SSL objects `context` makes, when `buffered` can see what it holds."""
    if _why_not is None:
        openssl._lib.SSL_CTX_ctrl(openssl.ssl_ctx(context), _SSL_CTRL_SET_READ_AHEAD, 1, None)


def reads_ahead(context: ssl.SSLContext) -> bool:
    """Whether `context` has read-ahead on (what `mpmctl status` and the tests look at)."""
    if openssl._lib is None:
        return False
    return bool(openssl._lib.SSL_CTX_ctrl(openssl.ssl_ctx(context), _SSL_CTRL_GET_READ_AHEAD, 0, None))
