"""Where the keep-alive lane takes a request (worker.laneowner, and worker.newcomer before it
becomes one): its route, when the lane carries it, and the backend connection pinned for it."""

from __future__ import annotations

from worker.regexlimit import RegexTimeout
from worker.routing import routed_target


def lane_route(router, head, target: bytes, conn):
    """Route `target` (worker.exchange's rules): its (route, mapped target) when the route is one
    the lane carries, to `conn`'s backend, or to one plain backend before a new connection's
    first request has one (`conn` None); else None."""
    resolved = router.remembered.get(target)
    if resolved is None:
        if target[:1] != b"/" or routed_target(target) is not target:
            return None
        try:
            resolved = router.resolve(target, head)
        except RegexTimeout:
            return None
        router.remember(target, resolved)
    route = resolved[0]
    if route is None or route.always_upgrade or route.reverse:
        return None
    origin = route.origin
    if conn is not None:
        if origin is not conn.origin:
            return None             # another backend: worker.exchange's
    elif origin is None or origin.tls or origin.proxy_protocol:
        return None                 # several (a balancer), a TLS or a PROXY one: worker.exchange's
    return resolved


def attach_idle(pool, lane, origin):
    """An idle connection to `origin` out of the pool, pinned to `lane` (its backend from now on),
    or None when none waits."""
    conn = pool.take_idle(origin)
    if conn is not None:
        lane.attach(conn.fd)
        conn.hand_to(lane.on_backend)
    return conn
