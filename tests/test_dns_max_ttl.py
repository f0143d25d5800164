"""`discover.max_ttl`: how far a record's TTL may stretch the interval between lookups
(review of DNS discovery, #6, the part a reload did not settle).

The next lookup came after max(interval, TTL) with no cap: a record with TTL 3600 kept a
member that had left DNS serving for an hour, whatever `interval` said, and nothing short of
a reload could shorten it.  Now the TTL counts up to `max_ttl` (60 s by default; nginx's
`resolver ... valid=` overrides the TTL the same way).

Real processes: a real master and worker, dnsmasq on a free loopback port answering with
TTL 3600 (`local-ttl`), real members on 127.0.0.2 and 127.0.0.3 (the `fleet` fixture).
"""

from __future__ import annotations

import time

from support import wait_for
from test_balancer_dns import ROUTES, discovering, listing, served

LONG_TTL = "local-ttl=3600\n"      # dnsmasq: the TTL of what it answers from its hosts file


def test_a_long_ttl_stretches_the_interval_only_up_to_max_ttl(proxy_factory, dns_server, fleet):
    """An operator who sets `interval: 0.3` on a name whose records say TTL 3600 relies on a
    changed record being followed within `max_ttl`: by default the next lookup is due within
    60 s (not an hour), and with `max_ttl: 1` a new address serves about 1 s after the change.
    Before the fix the next lookup was 3600 s away (and `max_ttl` was an unknown key)."""
    old, new = fleet[:2]
    dns_server.records({"app.test": [old.host]}, extra=LONG_TTL)
    balancers = discovering(dns_server, dns="app.test", type="A", port=old.port, interval=0.3)
    proxy = proxy_factory(ROUTES, workers=1, balancers=balancers)
    wait_for(lambda: served(proxy, 2) == {"m2": 2}, 10, 0.1, "the first member")
    discover = listing(proxy)["discover"]
    assert discover["max_ttl"] == 60.0 and 30 < discover["next_lookup"] <= 60, discover
    assert "(TTL: next in" in proxy.mpmctl("balancer").stdout

    balancers["app"]["discover"]["max_ttl"] = 1
    proxy.write_config()
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    wait_for(lambda: listing(proxy)["discover"]["max_ttl"] == 1.0, 5, 0.1, "max_ttl 1 applied")
    dns_server.records({"app.test": [new.host]}, extra=LONG_TTL)
    changed = time.monotonic()
    wait_for(lambda: served(proxy, 2) == {"m3": 2}, 4, 0.05, "the new address, within max_ttl")
    took = time.monotonic() - changed
    assert took < 3, f"the change served {took:.1f}s later; max_ttl is 1 s"
    assert 0 <= listing(proxy)["discover"]["next_lookup"] <= 1.0
