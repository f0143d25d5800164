"""A request whose backend failed before answering, sent again: to a fresh connection, or
to another member of its balancer (mod_proxy_balancer's failover).

A pooled connection the backend had closed or reset while it sat idle is found dead when a
request goes out on it (its close not seen by epoll yet): that request goes once more, on a
fresh connection to the same backend (`fresh_connection`), if sending it twice is safe: the
backend took none of it, or its method is idempotent.  A POST the backend may have read gets
the 502, as from nginx, whose cached upstream connections "follow the same rules" as any
(its tests for `proxy_next_upstream non_idempotent`), and as RFC 9112 §9.3.1 asks: "A proxy
MUST NOT automatically retry non-idempotent requests."

A request nothing of which a backend has taken (the connect failed) or may safely take
twice (an idempotent request we hold whole, cut off before any response byte) is sent to
another member of the balancer.  When every member has been tried, the answer is 503.
Whether it asks for an Upgrade does not matter: a WebSocket handshake is a GET (an HTTP/2
extended CONNECT reaches us as one), and a POST that asks for one is still a POST, which the
member may have acted on (review 2026-12-03-balancers #4).
"""

from __future__ import annotations

from worker import connecting

# RFC 9110 §9.2.2: the methods a client may repeat, so a proxy may too.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def fresh_connection(ex, request, untouched: bool) -> bool:
    """A pooled connection failed while the exchange waited for the response, before any
    of it: `request` (what we sent; None: not kept whole) goes again on a fresh connection,
    once, if the backend took none of it (`untouched`, or all of it still in the
    connection's `out`) or may take it twice.  False when that is not safe."""
    conn = ex.conn
    if (request is None or not conn.reused or ex.retried or ex.sent
            or ex.respbuf is not None or ex.reader is not None):
        return False
    untouched = untouched or (conn.out is not None and len(conn.out) >= len(request))
    if not (untouched or ex.head.method in IDEMPOTENT):
        return False
    ex.retried = True
    conn.close()
    ex.conn = None
    connecting.connect(ex, request, fresh=True)
    return True


def _may_retry(ex, status: int, unsent: bool) -> bool:
    if unsent:
        return True
    return (status == 502 and ex.request_copy is not None and not ex.sent and not ex.resp_started
            and not ex.respbuf and ex.reader is None
            and ex.head.method in IDEMPOTENT)


def next_member(ex, status: int, why: str) -> bool:
    """Try the request on another member: True if that is under way (or answered 503),
    False to fail as usual."""
    worker, member = ex.worker, ex.member
    unsent = ex.connecting       # nothing of the request reached the member
    worker.lb.failed(member, why, unsent, ex.origin)
    if not _may_retry(ex, status, unsent):
        return False
    failed_origin = ex.origin.name
    worker.lb.end(member, 0)
    ex.member = None
    if ex.conn is not None:
        ex.conn.close()
        ex.conn = None
    ex.tried += (member,)
    ex.interims = 0             # (the next member's 1xx heads count anew: worker.response.MAX_INTERIM)
    route_name = ex.route.name
    if not ex.pick():
        if not unsent:          # the member answered, and badly: a 502, as on a route without a balancer
            worker.log_error("error", f"route {route_name} backend {failed_origin}: {why}; "
                                      f"no other balancer member can take the request ({status})")
            ex.answer(status, why)
            return True
        worker.log_error("error", f"route {route_name} backend {failed_origin}: {why}; "
                                  "no other balancer member can take the request (503)")
        ex.answer(503, "No balancer member could take the request.")
        return True
    worker.log_error("warning", f"route {route_name} backend {failed_origin}: {why}; "
                                f"failing over to {ex.origin.name}")
    out = ex.request_head() + ex.body_prefix
    if ex.request_copy is not None:
        ex.request_copy = out
    ex.retried = False
    ex.respbuf = ex.reader = None
    ex.reusable = True
    connecting.connect(ex, out)
    return True
