"""Issue #18: balancer members from DNS, with a real DNS server on loopback.

dnsmasq (balancer_util.DnsServer) answers from records the tests write; the master asks it
every `interval` and fills the balancer's rows in the shared member table; the proxy's
workers, two of them, pick from that table.  A members are real servers on 127.0.0.2-6 with
one port, as an A record set would point at; SRV members are real servers on 127.0.0.1
with the ports their records give.
"""

from __future__ import annotations

import collections
import json
import os
import time

import psutil
from balancer_util import KeepAlive, Member, ws_close, ws_echo, ws_open
from support import wait_for

INTERVAL = 1.0
ROUTES = [{"path": "/", "to": "balancer://app/"}]
KEYS = [f"user-{i}" for i in range(300)]


def discovering(server, method: str = "byrequests", extra: dict | None = None, **discover) -> dict:
    """A `balancers:` section: balancer `app`, every member from DNS (`discover` keys)."""
    settings = {"resolvers": [server.resolver], "interval": INTERVAL, "timeout": 0.5, **discover}
    return {"app": {"method": method, "discover": settings, **(extra or {})}}


def a_records(server, members) -> None:
    server.records({"app.test": [member.host for member in members]})


def listing(proxy) -> dict:
    answer = proxy.mpmctl("balancer", "--json")
    assert answer.returncode == 0, answer.stderr
    return {b["name"]: b for b in json.loads(answer.stdout)["balancers"]}["app"]


def members(proxy) -> dict[str, dict]:
    return {m["url"]: m for m in listing(proxy)["members"]}


def served(proxy, n: int, connections: int = 2, header: str = "") -> collections.Counter:
    """Who answered n requests sent over `connections` keep-alive connections in turn."""
    clients = [KeepAlive(proxy) for _ in range(connections)]
    counts = collections.Counter()
    try:
        for i in range(n):
            status, _, body = clients[i % connections].get("/", header.format(i))
            counts[body.decode() if status == 200 else status] += 1
    finally:
        for client in clients:
            client.close()
    return counts


def test_members_appear_within_interval_and_after_their_first_good_check(proxy_factory, dns_server, fleet):
    a_records(dns_server, fleet[:1])
    health = {"method": "GET", "path": "/hc", "interval": 0.3}
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=fleet[0].port,
                                                        extra={"health": health}))
    wait_for(lambda: served(proxy, 4) == {"m2": 4}, 5, 0.1, "the first member")
    added = time.monotonic()
    a_records(dns_server, fleet[:3])
    wait_for(lambda: set(served(proxy, 6)) == {"m2", "m3", "m4"}, INTERVAL + 1, 0.02, "the new members")
    assert time.monotonic() - added <= INTERVAL + 1
    for member in fleet[1:3]:            # a health check came first, then traffic
        targets = [request["target"] for request in member.requests]
        assert targets[0] == "/hc" and "/" in targets
    listed = listing(proxy)
    assert listed["discover"]["records"] == 3 and listed["discover"]["failures"] == 0
    for m in listed["members"]:
        assert m["source"] == "A app.test" and m["seen"] is not None and m["seen"] < 3
        assert m["status"] == "enabled" and m["health"] == "up" and m["route"].startswith("d")
    text = proxy.mpmctl("balancer").stdout
    assert f"discover A app.test port {fleet[0].port} via {dns_server.resolver} every 1s: 3 members" in text
    assert f"{fleet[1].url}" in text and "dns, seen" in text


def test_a_member_gone_from_dns_keeps_its_tunnels_while_new_requests_avoid_it(proxy_factory, dns_server, fleet):
    leaving, staying = fleet[:2]
    a_records(dns_server, [leaving, staying])
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=leaving.port,
                                                        hold=60))
    wait_for(lambda: set(served(proxy, 4)) == {"m2", "m3"}, 5, 0.1, "both members")
    tunnels = [ws_open(proxy) for _ in range(4)]
    try:
        wait_for(lambda: (leaving.tunnels, staying.tunnels) == (2, 2), 5, 0.05, "two tunnels on each")
        a_records(dns_server, [staying])
        wait_for(lambda: members(proxy)[leaving.url]["status"] == "drain", INTERVAL + 1, 0.1, "the drain")
        assert served(proxy, 20) == {"m3": 20}
        for i, (sock, _, rest) in enumerate(tunnels):
            for n in range(5):
                message = f"tunnel {i} message {n}".encode()
                assert ws_echo(sock, rest, message) == message
        state = members(proxy)[leaving.url]
        assert state["busy"] == 2 and state["leaving_for"] is not None
    finally:
        for sock, _, _ in tunnels:
            ws_close(sock)
    # Nothing open on it any more: it keeps its row (its sticky sessions) for `hold`, and
    # still takes no new request while a member in DNS can.
    wait_for(lambda: members(proxy)[leaving.url]["busy"] == 0, 5, 0.1, "its tunnels closed")
    assert members(proxy)[leaving.url]["status"] == "drain"
    assert served(proxy, 10) == {"m3": 10}
    assert "left DNS: draining" in proxy.error_text()


def test_past_hold_a_departed_member_is_gone_and_its_row_freed_when_it_closes(proxy_factory, dns_server, fleet):
    leaving, staying = fleet[:2]
    a_records(dns_server, [leaving, staying])
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=leaving.port,
                                                        hold=1), workers=1)
    wait_for(lambda: set(served(proxy, 2)) == {"m2", "m3"}, 5, 0.1, "both members")
    sock, _, rest = ws_open(proxy)
    try:
        holder = leaving if leaving.tunnels else staying
        a_records(dns_server, [m for m in (leaving, staying) if m is not holder])
        # "gone" lasts until the worker's next heartbeat closes the tunnel and frees the row: a
        # loaded machine may look only after that (the log line below says it was gone).
        wait_for(lambda: members(proxy).get(holder.url, {"status": "gone"})["status"] == "gone", INTERVAL + 3, 0.1,
                 "hold to pass")
        wait_for(lambda: "closing its tunnels (1 exchanges and tunnels open" in proxy.error_text(), 5, 0.1, "the log line")
        # The worker closes it at its next heartbeat past the hold (every 0.5 s; later under load).
        wait_for(lambda: holder.tunnels == 0, 5, 0.05, "the worker to close the tunnel")
        assert set(served(proxy, 6)) == {"m3" if holder is leaving else "m2"}
    finally:
        ws_close(sock)
    wait_for(lambda: holder.url not in members(proxy), 5, 0.1, "the row freed")


def test_srv_weights_split_1_to_3_and_a_lower_priority_waits_as_hot_standby(proxy_factory, dns_server):
    a, b, standby = Member("a"), Member("b"), Member("standby")
    try:
        name = "_http._tcp.app.test"
        dns_server.records({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"], "standby.test": ["127.0.0.1"]},
                           srv=[(name, "a.test", a.port, 0, 10), (name, "b.test", b.port, 0, 30),
                                (name, "standby.test", standby.port, 1, 50)])
        proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns=name))
        wait_for(lambda: len(members(proxy)) == 3, 5, 0.1, "three members")
        listed = members(proxy)
        assert [(m["weight"], m["status"]) for m in listed.values()] == \
            [(10, "enabled"), (30, "enabled"), (50, "hot-standby")]
        assert {m["source"] for m in listed.values()} == {"SRV _http._tcp.app.test"}
        counts = served(proxy, 2000, connections=4)
        assert abs(counts["a"] / 2000 - 0.25) <= 0.05 and abs(counts["b"] / 2000 - 0.75) <= 0.05, counts
        assert counts["standby"] == 0
    finally:
        for member in (a, b, standby):
            member.close()


def test_a_dead_resolver_or_nxdomain_keeps_the_last_set_across_a_reload(proxy_factory, dns_server, fleet):
    a_records(dns_server, fleet[:2])
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=fleet[0].port,
                                                        interval=0.5))
    wait_for(lambda: set(served(proxy, 4)) == {"m2", "m3"}, 5, 0.1, "both members")
    dns_server.stop()
    wait_for(lambda: listing(proxy)["discover"]["failures"] >= 2, 5, 0.2, "failed lookups")
    assert set(served(proxy, 8)) == {"m2", "m3"}
    assert proxy.reload().returncode == 0            # the new generation starts with the set, not empty
    proxy.wait_ready(generation=2)
    assert set(served(proxy, 8)) == {"m2", "m3"}
    dns_server.records({"other.test": ["127.0.0.9"]})   # back, but app.test is gone: NXDOMAIN
    wait_for(lambda: "NXDOMAIN" in (listing(proxy)["discover"]["last_error"] or ""), 4, 0.2, "NXDOMAIN")
    assert set(served(proxy, 8)) == {"m2", "m3"}
    log = proxy.error_text()
    assert log.count("DNS lookup of app.test (A) failed") == 1 and "keeping the last 2 members" in log
    a_records(dns_server, fleet[2:3])
    # The new member serves; the two that left drain for `hold`, taking no new request.
    wait_for(lambda: {url: m["status"] for url, m in members(proxy).items()}
             == {fleet[2].url: "enabled", fleet[0].url: "drain", fleet[1].url: "drain"},
             INTERVAL + 1, 0.1, "the new answer applied")
    wait_for(lambda: set(served(proxy, 8)) == {fleet[2].name}, 5, 0.1, "only the new member serving")
    assert "DNS answers again for app.test" in proxy.error_text()


def test_an_upgrade_starts_the_next_master_with_the_members_found(proxy_factory, dns_server, fleet):
    a_records(dns_server, fleet[:2])
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=fleet[0].port))
    wait_for(lambda: set(served(proxy, 4)) == {"m2", "m3"}, 5, 0.1, "both members")
    dns_server.stop()                                  # the next master cannot ask: it starts from ours
    result = proxy.mpmctl("upgrade", timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
    try:
        assert proxy.proc.wait(10) == 0 and new_master != proxy.proc.pid
        assert set(served(proxy, 8)) == {"m2", "m3"}
        assert set(members(proxy)) == {fleet[0].url, fleet[1].url}
    finally:
        proxy.mpmctl("stop")
        wait_for(lambda: not psutil.pid_exists(new_master), 20, 0.1, "the new master to stop")


def test_40_records_for_30_slots_fill_them_and_say_so_once(proxy_factory, dns_server):
    addresses = [f"127.0.1.{i}" for i in range(1, 41)]
    # 40 A records do not fit in dnsmasq's 512-byte answers: the proxy asks again over TCP
    dns_server.records({"app.test": addresses}, extra="edns-packet-max=512\n")
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=9, slots=30,
                                                        interval=0.3))
    wait_for(lambda: len(members(proxy)) == 30, 5, 0.1, "30 members")
    time.sleep(1.0)                                    # a few more lookups with the same answer
    listed = listing(proxy)
    assert (listed["discover"]["records"], listed["discover"]["left_out"]) == (40, 10)
    assert sorted(m["url"] for m in listed["members"]) == sorted(f"http://{a}:9" for a in sorted(addresses)[:30])
    assert proxy.error_text().count("left out (raise slots)") == 1


def test_two_proxies_on_the_same_dns_agree_on_300_keys_before_and_after_a_change(proxy_factory, dns_server, fleet):
    a_records(dns_server, fleet[:4])
    balancers = discovering(dns_server, "hash", {"hash_key": {"source": "header", "name": "X-User"}},
                            dns="app.test", type="A", port=fleet[0].port)
    first = proxy_factory(ROUTES, workers=1, balancers=balancers)
    second = proxy_factory(ROUTES, workers=2, balancers=balancers)

    def assignment(proxy) -> dict[str, str]:
        client = KeepAlive(proxy)
        try:
            return {key: client.get("/", f"X-User: {key}\r\n")[2].decode() for key in KEYS}
        finally:
            client.close()

    def both_see(count: int) -> None:
        wait_for(lambda: all(len([m for m in members(p).values() if m["status"] == "enabled"]) == count
                             for p in (first, second)), INTERVAL + 1, 0.1, f"{count} members on both")

    both_see(4)
    before = assignment(first)
    assert assignment(second) == before and set(before.values()) == {"m2", "m3", "m4", "m5"}
    a_records(dns_server, fleet)                       # m6 joins
    both_see(5)
    after = assignment(first)
    assert assignment(second) == after
    moved = [key for key in KEYS if after[key] != before[key]]
    assert all(after[key] == "m6" for key in moved)    # only to the newcomer
    assert 0.5 / 5 * len(KEYS) <= len(moved) <= 1.5 / 5 * len(KEYS)
    a_records(dns_server, fleet[1:])                   # m2 leaves
    both_see(4)
    again = assignment(first)
    assert assignment(second) == again and "m2" not in again.values()
    assert all(again[key] == after[key] for key in KEYS if after[key] != "m2")   # only m2's keys move
