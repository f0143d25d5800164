"""`mpmctl balancer set NAME [ADDRESS]:PORT ...` for a member DNS found by its AAAA record
(review of DNS discovery, #15).

The member is `http://[::1]:PORT`; naming it as its URL writes the address refused it
("no member '[::1]:PORT'"), only the unbracketed `::1:PORT` matched, and the refusal listed
the members by their hashed routes.  Real processes: a real master, dnsmasq on a free
loopback port answering an AAAA record, `mpmctl` run as an operator runs it.
"""

from __future__ import annotations

from support import free_port, wait_for
from test_balancer_dns import ROUTES, discovering, members


def test_an_aaaa_member_is_named_by_bracketed_address_and_port(proxy_factory, dns_server):
    """An operator drains the member they see as `http://[::1]:PORT` by `[::1]:PORT`, and a
    name that matches nothing is refused with the members' URLs listed."""
    port = free_port()
    url = f"http://[::1]:{port}"
    dns_server.records({"app.test": ["::1"]})
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(dns_server, dns="app.test", type="AAAA", port=port))
    wait_for(lambda: url in members(proxy), 10, 0.1, "the AAAA member")

    result = proxy.mpmctl("balancer", "set", "app", f"[::1]:{port}", "drain")
    assert result.returncode == 0, result.stderr
    assert members(proxy)[url]["status"] == "drain"

    refused = proxy.mpmctl("balancer", "set", "app", f"[::2]:{port}", "enable")
    assert refused.returncode == 1
    assert f"has no member '[::2]:{port}' (members: {url})" in refused.stderr, refused.stderr
