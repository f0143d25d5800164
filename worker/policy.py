"""What a routed request must pass before it goes on to a backend: who the client is (the
X-Forwarded-For hop left of the trusted proxies when the peer is one: worker.limits), the
route's WebSocket Origin policy (403: Cross-Site WebSocket Hijacking), and the per-client
limits (worker.limits: 429 with Retry-After, 503).  Asked by `Exchange.start` only for an upgrade or when limits are
configured, so the usual request pays nothing for it."""

from __future__ import annotations


def admit(ex, route) -> bool:
    """False when the request was answered (403, 429, 503) and goes no further."""
    client, head = ex.client, ex.head
    limits = client.limiter
    if client.forwarded:
        ex.client_ip = limits.forwarded_client(head, client.client_ip)
    if ex.upgrade is not None and route.origin_policy:
        why = route.refuse_origin(head)
        if why is not None:
            ex.worker.log_error("info", f"{ex.client_ip.decode()} route {route.name}: {why} (403)")
            ex.refused_by = route
            ex.answer(403, why)
            return False
    if limits is not None and limits.enabled:
        refusal = limits.admit(ex, route, ex.upgrade)
        if refusal is not None:
            status, why, extra = refusal
            ex.refused_by = route
            ex.answer(status, f"per-client limit: {why}", keep_alive=status == 429 and not head.has_body, extra=extra)
            return False
    return True
