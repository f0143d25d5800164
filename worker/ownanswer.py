"""An exchange's answers of its own: refusals (4xx), no route (404), no member (503), and a
backend's failures (502, 504), with the error-log lines that say why.

Bound into `worker.exchange.Exchange` as its methods (`answer`, `backend_lost`, `backend_failed`,
`on_deadline`), where the rest of the code calls them; kept here so that module holds the
exchange's path, and this one what ends it early.
"""

from __future__ import annotations

from worker import failover, regexlimit
from worker.phases import CONNECTING, FLUSHING, RELAYING, WAITING
from worker.rewrite import error_response


def on_deadline(ex) -> None:
    """Whose wait ran out decides the answer: only the backend's is a 504 and a failure
    of its member's."""
    conn = ex.conn
    if ex.phase is CONNECTING:
        ex.backend_failed(504, "connect timed out")
    elif ex.phase is FLUSHING or (ex.phase is RELAYING and ex.client.ep.out):
        # The client does not take what we hold for it: no failure of the backend's.
        ex.client.close()
    elif ex.req_framing is not None and not ex.resp_started and conn is not None and not conn.out:
        # The backend took all we had; the client's body stopped coming (nginx's
        # client_body_timeout, Apache's RequestReadTimeout: 408).
        ex.worker.log_error("info", f"{ex.client.client_ip.decode()} the request body stalled "
                                    f"for {ex.route.timeout:g}s (408)")
        ex.answer(408, "The request body did not arrive in time.")
    else:
        ex.backend_failed(504, "backend timed out")


def routing_too_slow(ex, route) -> None:
    """The routes' regular expressions ran past their limit on this request: 500, as nginx
    answers when PCRE's match limit ends a search (worker.regexlimit)."""
    where = f"the regular expressions of route {route.name} (line {route.line})" if route is not None \
        else "the routes' regular expressions"
    ex.worker.log_error("error", f"{ex.client.client_ip.decode()} {where} ran past "
                                 f"{regexlimit.LIMIT * 1000:g} ms of CPU on this request: 500")
    ex.answer(500, "The routing of this URL took too long.")


def answer(ex, status: int, message: str, keep_alive: bool = False, extra: bytes = b"") -> None:
    """An answer of our own: 404/503, or a backend failure (502/504), keeping the connection
    when `keep_alive`; or a bad request (4xx); `extra` is header lines of ours (Retry-After).
    Once the response has begun, closing is all that is honest."""
    if ex.resp_started:
        ex.client.close()
        return
    ex.release_backend(reuse=False)
    ex.status = status
    # A body still due is not read (what follows it would pass for the next request): it closes.
    ex.keep_alive = keep_alive and ex.keep_alive and ex.req_framing is None and ex.worker.keeps_alive(ex.client)
    if ex.req_framing is not None:     # what the client still sends of its body is not read
        ex.req_framing = None
        ex.body_left = True            # (so its connection lingers: worker.linger)
    if ex.client.http2:        # the status as HTTP/2 fields, the page as DATA
        ex.enter(FLUSHING)
        if ex.client.answer(ex, status, message, extra):
            ex.done()
        return
    out = error_response(status, message, ex.keep_alive, extra)
    head_size = out.find(b"\r\n\r\n") + 4
    ex.head_sent += head_size          # (+=: after the 1xx heads relayed, if any)
    if ex.head is not None and ex.head.method == b"HEAD":
        out = out[:head_size]            # a response to HEAD has no body (RFC 9110 §9.3.2)
    ex.sent += len(out)
    ex.enter(FLUSHING)
    try:
        ex.client.ep.send(out)
    except OSError:
        ex.client.close()
        return
    if not ex.client.ep.out:
        ex.done()
    else:
        ex.update_interest()


def backend_lost(ex, why: str, request, untouched: bool = False) -> None:
    """The backend connection failed: before any of the response, a pooled one may be
    replaced by a fresh one (worker.failover), else 502.  `untouched`: the backend took
    none of `request`."""
    if ex.phase is not WAITING or not failover.fresh_connection(ex, request, untouched):
        ex.backend_failed(502, why)


def backend_failed(ex, status: int, why: str) -> None:
    if ex.member is not None and failover.next_member(ex, status, why):
        return
    route = ex.route.name if ex.route is not None else "-"
    backend = ex.origin.name if ex.origin is not None else "-"
    ex.worker.log_error("error", f"route {route} backend {backend}: {why} ({status})")
    # The client's connection goes on (its request read whole: `answer`), as nginx's and Apache's
    # does after their 502 and 504: while a backend is down, its clients need not reconnect (a
    # TLS one: handshake again) for every request.
    ex.answer(status, why, keep_alive=True)
