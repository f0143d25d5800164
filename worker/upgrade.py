"""An exchange whose 101 the route allows becomes a tunnel (tunnel.Tunnel).

The exchange hands over both endpoints, the holds of the client's connection and of the
tunnel (worker.limits), and its balancer member, which counts the tunnel as busy until it
closes.  What the access log line needs when the tunnel ends goes with it as its context.
"""

from __future__ import annotations

from tunnel.tunnel import Tunnel
from worker import exchange as exchange_phases  # imported by worker.exchange: read at call time


def open_tunnel(ex, head101: bytes, rest: bytes) -> None:
    """Both endpoints become a tunnel, with the bytes read past either head sent first."""
    worker, client, conn = ex.worker, ex.client, ex.conn
    ex.status = 101
    ex.enter(exchange_phases.TUNNEL)
    ex.conn = None
    holds = [*client.holds, *(ex.holds or ())]     # the connection's place and the tunnel's
    ex.holds = None
    client.handed_over()
    context = _log_context(ex)
    context["head_sent"] = len(head101)      # tunnel_out counts it, the log's %b does not
    if holds:
        context["limits"] = worker.admission.limits.export(holds)
    elif ex.client_ip is not client.client_ip:
        # Counted nowhere here; a successor whose limits are on counts it (its connection
        # for the peer, the tunnel for the client): worker.admission.tunnel_adopted.
        context["peer"] = client.client_ip.decode()
    on_close = worker.tunnel_closed
    if ex.member is not None:        # the member counts the tunnel as busy until it closes
        context["lb"] = worker.lb.key(ex.member)
        on_close = worker.lb.tunnel_closer(ex.member, on_close)
        ex.member = None
    tunnel = Tunnel(ex.loop, client.ep, conn, ex.route.timeout, on_close,
                    to_backend=bytes(client.inbuf), to_client=head101 + rest, context=context)
    worker.tunnel_opened(tunnel, ex)


def _log_context(ex) -> dict:
    head = ex.head
    return {"client": ex.client_ip.decode(), "method": head.method.decode("latin-1"),
            "target": head.target.decode("latin-1"), "version": head.version,
            "referer": (head.get(b"referer") or b"").decode("latin-1"),
            "agent": (head.get(b"user-agent") or b"").decode("latin-1"),
            "route": ex.route.name, "backend": ex.origin.name, "head_size": len(head.raw)}
