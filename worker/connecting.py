"""An exchange's backend connection: taken from the pool or opened (with the PROXY header
that a fresh connection of a PROXY-protocol origin begins with: ahead of the request on a
plain one, in clear before the ClientHello on a TLS one), and the connect and TLS
handshake driven from epoll events (`advance`).  A socket the kernel will not give us
(out of descriptors or buffers) is the proxy's shortage, not the member's failure: 503,
and no member is put in error state for it."""

from __future__ import annotations

import errno

from worker import proxyproto
from worker.phases import CONNECTING, WAITING
from worker.tls import describe

_LOCAL_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)   # socket() failing here
LOG_INTERVAL = 10.0          # seconds between two lines about it (worker.acceptor's, for accept)
_shortage = [-LOG_INTERVAL, 0]   # this worker's: when it was last said, times since


def connect(ex, out: bytes, fresh: bool = False) -> None:
    """Send `out` (the request head, and what of the body came with it) on a pooled
    connection (unless `fresh`), or open one and keep `out` until it is connected."""
    origin = ex.origin
    # A connection that began with a PROXY header speaks for one client connection only.
    private = proxyproto.private_header(ex) if origin.proxy_protocol else None
    try:
        conn = ex.conn = ex.worker.pool.acquire(origin, ex.on_backend_event, fresh, private)
    except OSError as exc:
        ex.conn = None
        if exc.errno in _LOCAL_SHORTAGE:    # ours, not the member's: no failure of its
            _say_shortage(ex, exc)
            ex.answer(503, "The proxy is out of resources; try again shortly.")
        else:
            ex.backend_failed(502, f"connect failed: {exc.strerror or exc}")
        return
    if private is not None and not conn.reused and not origin.tls:    # TLS: sent before the handshake
        out = private + out
    if conn.connected:
        ex.enter(WAITING)
        # The request head (with what of the body came with it), held to the end of the
        # loop turn when nothing more follows it (tunnel.endpoint: send_batched).
        try:
            if ex.req_framing is None:
                conn.send_batched(out)
            else:
                conn.send(out)
        except OSError as exc:         # none of `out` left: it may go again, whole
            ex.backend_lost(f"send failed: {exc.strerror or exc}", out, untouched=True)
    else:
        ex.enter(CONNECTING)
        conn.out = out
    ex.update_interest()


def _say_shortage(ex, exc: OSError) -> None:
    """Once per LOG_INTERVAL, with how often since: a line per request was thousands a second
    under load, while each 503 is in the access log anyway."""
    _shortage[1] += 1
    now = ex.worker.loop.now
    if now - _shortage[0] >= LOG_INTERVAL:
        ex.worker.log_error("error", f"route {ex.route.name}: no socket for a backend connection: {exc.strerror} "
                                     f"(503; {_shortage[1]} times since the last such line)")
        _shortage[0], _shortage[1] = now, 0


def advance(ex, conn) -> bool:
    """Drive the connect / TLS handshake; True once the connection is ready."""
    try:
        wanted = conn.advance()
    except ConnectionError as exc:
        ex.backend_failed(502, exc.strerror or str(exc))
        return False
    except OSError as exc:    # ssl.SSLError included
        ex.backend_failed(502, f"TLS handshake with the backend failed: {describe(exc)}")
        return False
    if wanted:
        if wanted != conn.mask:
            conn.mask = wanted
            ex.loop.modify(conn.fd, wanted)
        return False
    ex.enter(WAITING)
    return True
