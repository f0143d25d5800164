"""`discover.dns` written as an IP address (review 2026-12-03-leftovers #1).

nginx's `server 10.0.0.1 resolve` and HAProxy's `server ... 10.0.0.1:80 resolvers r` take an
address as it is, with no question; nginx refuses `service=` (SRV) with one ("requires domain
name").  Here the same: with type A or AAAA an address is one fixed member, in place before
the workers' first request, and DNS is never asked; with type SRV it is a configuration error.
Before, "127.0.0.2" went to DNS as a name (NXDOMAIN: the balancer stayed empty, every request
503) and "::1" was refused as "not a DNS name".

Real processes: a real master and worker, real members on loopback (IPv4 and IPv6), and
dnsmasq (balancer_util.DnsServer, logging every query) as the resolver the balancers name."""

from __future__ import annotations

import json
import socket
import textwrap
import threading

import pytest
from balancer_util import KeepAlive, Member
from support import wait_for

from conf import ConfigError, load_config


class Member6(Member):
    """A Member on [::1]."""

    def _listen(self) -> None:
        self.sock = socket.socket(socket.AF_INET6)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("::1", self.port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.alive = True
        threading.Thread(target=self._accept_loop, args=(self.sock,), daemon=True).start()


def first_answer(proxy, path: str) -> tuple[int, str]:
    client = KeepAlive(proxy)
    try:
        status, _, body = client.get(path)
        return status, body.decode()
    finally:
        client.close()


def test_an_address_in_discover_dns_is_one_fixed_member_and_never_asked(proxy_factory, dns_server, fleet):
    six = Member6("six")
    try:
        dns_server.records({"named.test": [fleet[1].host]})
        common = {"resolvers": [dns_server.resolver], "interval": 0.2, "timeout": 0.5}
        balancers = {
            "four": {"discover": {"dns": fleet[0].host, "type": "A", "port": fleet[0].port, **common}},
            "six": {"discover": {"dns": "[::1]", "type": "AAAA", "port": six.port, **common}},
            "named": {"discover": {"dns": "named.test", "type": "A", "port": fleet[1].port, **common}},
        }
        routes = [{"path": f"/{b}/", "to": f"balancer://{b}/"} for b in balancers]
        proxy = proxy_factory(routes, workers=1, balancers=balancers)
        # in place before the first request: no window of 503 while a first answer is awaited
        assert first_answer(proxy, "/four/") == (200, fleet[0].name)
        assert first_answer(proxy, "/six/") == (200, "six")
        log = f"{dns_server.dir}/dnsmasq.log"
        wait_for(lambda: open(log).read().count("named.test") >= 6, 5, 0.05, "a few rounds for named.test")
        assert first_answer(proxy, "/named/") == (200, fleet[1].name)
        queries = [line for line in open(log) if "query[" in line]
        assert not [q for q in queries if fleet[0].host in q.split("query[", 1)[1].split(" from")[0]
                    or "::1" in q.split(" from")[0]], queries
        listed = {b["name"]: b for b in json.loads(proxy.mpmctl("balancer", "--json").stdout)["balancers"]}
        assert [m["url"] for m in listed["four"]["members"]] == [fleet[0].url]
        assert [m["url"] for m in listed["six"]["members"]] == [f"http://[::1]:{six.port}"]
        assert listed["four"]["discover"]["failures"] == 0 and listed["four"]["discover"]["dns"] == fleet[0].host
        assert "DNS lookup of 127.0.0.2" not in proxy.error_text()
        text = proxy.mpmctl("balancer").stdout
        assert f"discover A {fleet[0].host} port {fleet[0].port}: an IP address, never asked: 1 member" in text
    finally:
        six.close()


def test_an_address_in_discover_dns_with_type_srv_is_refused_at_its_line(tmp_path):
    path = tmp_path / "srv.yaml"
    path.write_text(textwrap.dedent("""\
        listen: ["127.0.0.1:8000"]
        balancers:
          app:
            discover: {dns: "10.0.0.1", type: SRV, resolvers: ["127.0.0.1"]}
        routes:
          - {path: /, to: "balancer://app/"}
        """))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.errors == [f"{path}:4: balancers.app.discover.dns '10.0.0.1' is an IP address: SRV records "
                                 "are asked of a name; for a fixed address use type A or AAAA, or list it "
                                 "under 'members'"], info.value.errors


@pytest.mark.parametrize("address, rtype, fits", [("10.0.0.1", "AAAA", "A"), ("[::1]", "A", "AAAA")])
def test_an_address_whose_family_the_type_cannot_give_is_refused_at_its_line(tmp_path, address, rtype, fits):
    """A typo the member would carry silently: `type: AAAA` never answers with an IPv4 address."""
    path = tmp_path / "mpm.yaml"
    path.write_text(textwrap.dedent(f"""\
        listen: ["127.0.0.1:8000"]
        balancers:
          app:
            discover: {{dns: "{address}", type: {rtype}, resolvers: ["127.0.0.1"]}}
        routes:
          - {{path: /, to: "balancer://app/"}}
        """))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    family = 6 if ":" in address else 4
    assert info.value.errors == [f"{path}:4: balancers.app.discover.type {rtype} does not fit the IPv{family} "
                                 f"address '{address.strip('[]')}' (type {fits})"], info.value.errors
