"""The row of a member that left DNS, once its `hold` has passed and a newcomer waits for it
(review of DNS discovery, section 8).

Past `hold` the master marks the departed member's row `gone` and the workers close its
tunnels at their next heartbeat (every 0.5 s).  When every row is held and a newcomer waits,
the next DNS answer gives it that `gone` row at once: the workers, which looked for tunnels
of rows `gone` *now*, never found the departed member's tunnel again.  It relayed for ever,
and counted as busy on the newcomer.

Real processes, as in test_balancer_dns.py: a real master and its worker, dnsmasq on a free
loopback port, real members on 127.0.0.2 and 127.0.0.3 (the `fleet` fixture), a real
WebSocket client.
"""

from __future__ import annotations

import time

from balancer_util import ws_close, ws_echo, ws_open
from support import wait_for
from test_balancer_dns import ROUTES, a_records, discovering, members, served

HOLD = 1.0


def test_a_departed_members_tunnel_closes_when_a_newcomer_takes_its_gone_row(proxy_factory, dns_server, fleet):
    """An operator who replaces a member in DNS relies on `hold`: past it, what is still open
    on the member that left is cut, whoever takes its row.  One row (slots: 1): the tunnel
    on A closes within a few heartbeats after B took the row, and B, which has no
    connection, reads busy 0.  Before the fix the tunnel still relayed 4 s later, busy 1 on B."""
    departed, newcomer = fleet[:2]
    a_records(dns_server, [departed])
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(dns_server, dns="app.test", type="A",
                                                                   port=departed.port, slots=1, hold=HOLD,
                                                                   interval=0.2))
    wait_for(lambda: served(proxy, 2) == {"m2": 2}, 10, 0.1, "member A")
    sock, _, rest = ws_open(proxy)
    try:
        assert ws_echo(sock, rest, b"hello") == b"hello"
        assert departed.tunnels == 1
        changed = time.monotonic()       # before: the master may see the change before a_records returns
        a_records(dns_server, [newcomer])
        wait_for(lambda: newcomer.url in members(proxy), HOLD + 5, 0.05, "the newcomer to take the row")
        took = time.monotonic() - changed
        # The heartbeat closes it within 0.5 s; 4 s leaves room for a loaded machine.
        wait_for(lambda: departed.tunnels == 0, 4, 0.05, "the departed member's tunnel to close")
        assert served(proxy, 4) == {"m3": 4}
        wait_for(lambda: members(proxy)[newcomer.url]["busy"] == 0, 2, 0.05, "busy 0 on the newcomer")
        assert took >= HOLD, f"the newcomer took the row {took:.1f}s after the change, within hold"
        assert "closing its tunnels" in proxy.error_text()
    finally:
        ws_close(sock)
