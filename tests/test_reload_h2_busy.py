"""A member's busy count across a reload, for what stays in the old worker: RFC 8441
WebSockets over HTTP/2 (review of HTTP/2 with balancers, #4).

An HTTP/1.1 tunnel is handed to the new generation and counted there again; an HTTP/2
stream cannot be, so its tunnel lives on in the old worker, counted on the old table only.
The new generation's picks read busy 0 for its member: `max_connections` was exceeded and
bybusyness sent new tunnels to it, and `mpmctl balancer` said busy 0.

Real processes: a real master, two generations of its worker, real members
(balancer_util.Member, WebSocket echo), a real HTTP/2 client (h2client.H2Client, h2c).
"""

from __future__ import annotations

import json

import pytest
from balancer_util import Member
from h2client import H2Client
from support import wait_for


def busy(proxy) -> dict[str, int]:
    answer = proxy.mpmctl("balancer", "--json")
    assert answer.returncode == 0, answer.stderr
    return {m["route"]: m["busy"] for b in json.loads(answer.stdout)["balancers"] for m in b["members"]}


@pytest.mark.timeout(60)
def test_an_h2_websocket_left_in_the_old_worker_counts_against_max_connections(proxy_factory):
    """An operator who sets `max_connections: 1` relies on it across a reload: a member whose
    one tunnel is an HTTP/2 WebSocket left in the old worker reads busy 1 and takes no
    second one; the next goes to the other member, the one after finds both full (503).
    Before the fix it read busy 0 and took a second tunnel."""
    a, b = Member("a"), Member("b")
    clients = []
    try:
        balancers = {"app": {"method": "bybusyness", "members": [{"url": m.url, "route": m.name,
                                                                   "max_connections": 1} for m in (a, b)]}}
        proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], start=False, workers=1, balancers=balancers)
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        old = H2Client(proxy.port)
        clients.append(old)
        first = old.websocket("/ws")
        assert first.status == 200
        owner, other = (a, b) if a.tunnels else (b, a)
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation=2)
        old.ws_send(first.id, b"still here")
        assert old.ws_recv(first.id) == (2, b"still here")     # it lives on in the old worker
        wait_for(lambda: busy(proxy)[owner.name] == 1, 3, 0.05, "busy 1 on the member of the old worker's tunnel")

        new = H2Client(proxy.port)
        clients.append(new)
        statuses = [new.websocket("/ws").status for _ in range(2)]
        assert (owner.tunnels, other.tunnels) == (1, 1), (
            f"max_connections 1: {owner.name} has {owner.tunnels} tunnels, {other.name} {other.tunnels}")
        assert statuses == [200, 503], statuses
        assert busy(proxy) == {owner.name: 1, other.name: 1}
    finally:
        for client in clients:
            client.close()
        a.close()
        b.close()
