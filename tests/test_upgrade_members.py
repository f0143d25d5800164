"""What `mpmctl upgrade` hands the next master of the balancers' member table (review of DNS
discovery #10, review of operating #7).

The old master handed over a snapshot: the members DNS gave last (not those draining after
they left DNS) and the counters as they were when the upgrade began.  A draining member's
tunnels, handed to the new workers, were then counted nowhere and never cut by `hold`; and
what the old workers served until the new ones were ready was lost from the member
counters, which went backwards across the upgrade.

Real processes: a real master, its successor from `mpmctl upgrade`, their workers, dnsmasq
on a free loopback port, real members (balancer_util.Member), real clients and /metrics
scrapes on the admin listener.
"""

from __future__ import annotations

import os
import threading

import psutil
import pytest
from admin_util import admin_section, scrape, value
from balancer_util import KeepAlive, Member, ws_close, ws_echo, ws_open
from support import wait_for
from test_balancer_dns import ROUTES, a_records, discovering, members, served

HOLD = 4.0          # outlasts the upgrade (about 1-2 s), so the new master still sees the drain


def _upgrade(proxy) -> int:
    """`mpmctl upgrade`; the new master's pid, stopped by the fixture's teardown too."""
    result = proxy.mpmctl("upgrade", timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
    assert new_master != proxy.proc.pid
    proxy.seen_pids.add(new_master)
    return new_master


def _stop(proxy, new_master: int) -> None:
    proxy.mpmctl("stop")
    wait_for(lambda: not psutil.pid_exists(new_master) or psutil.Process(new_master).status() == psutil.STATUS_ZOMBIE,
             20, 0.1, "the new master to stop")


@pytest.mark.timeout(60)
def test_an_upgrade_keeps_a_draining_member_its_tunnel_counted_and_cut_at_hold(proxy_factory, dns_server, fleet):
    """An operator who upgrades while a member drains after leaving DNS relies on `hold` as
    across a reload: the new master lists it draining, counts its tunnel (busy 1), and cuts
    the tunnel when hold passes.  Before the fix the new master did not list it (busy
    nowhere), and the tunnel relayed on past hold."""
    leaving, staying = fleet[:2]
    a_records(dns_server, [leaving, staying])
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(dns_server, dns="app.test", type="A",
                                                                   port=leaving.port, hold=HOLD, interval=0.3))
    wait_for(lambda: set(served(proxy, 2)) == {"m2", "m3"}, 10, 0.1, "both members")
    sock, _, rest = ws_open(proxy)
    new_master = None
    try:
        holder, other = (leaving, staying) if leaving.tunnels else (staying, leaving)
        a_records(dns_server, [other])
        wait_for(lambda: members(proxy)[holder.url]["status"] == "drain", 3, 0.05, "the drain")
        new_master = _upgrade(proxy)
        listed = members(proxy)
        assert holder.url in listed, f"the new master forgot the draining member: {sorted(listed)}"
        assert (listed[holder.url]["status"], listed[holder.url]["busy"]) == ("drain", 1), listed[holder.url]
        assert ws_echo(sock, rest, b"after the upgrade") == b"after the upgrade"
        wait_for(lambda: holder.tunnels == 0, HOLD + 3, 0.05, "hold to cut the tunnel")
        wait_for(lambda: holder.url not in members(proxy), 3, 0.1, "its row freed")
        assert set(served(proxy, 4)) == {other.name}
    finally:
        ws_close(sock)
        if new_master is not None:
            _stop(proxy, new_master)


@pytest.mark.timeout(90)
def test_member_counters_neither_go_backwards_nor_lose_counts_across_an_upgrade(proxy_factory):
    """/metrics counters never go backwards while the server lives (README): scraped every
    few ms across an upgrade under load, no member counter decreases, and once the old
    master is gone the members' requests add up to the route's.  Before the fix the
    counters fell back to the snapshot taken when the upgrade began (hundreds lost)."""
    one, two = Member("a"), Member("b")
    balancers = {"app": {"members": [{"url": one.url}, {"url": two.url}]}}
    proxy = proxy_factory(ROUTES, workers=2, balancers=balancers, admin=admin_section())
    stop = threading.Event()
    backwards: list = []
    served_ok = [0]

    def load() -> None:
        client = KeepAlive(proxy)
        while not stop.is_set():
            try:
                status, _, _ = client.get("/")
                served_ok[0] += status == 200
            except (OSError, ConnectionError):
                client.close()
                client = KeepAlive(proxy)
        client.close()

    def watch() -> None:
        last: dict = {}
        while not stop.is_set():
            try:
                samples = scrape(proxy)
            except (OSError, AssertionError):
                continue
            for key, number in samples.items():
                if key[0].startswith("mpm_balancer_member_") and key[0].endswith("_total"):
                    if number < last.get(key, 0):
                        backwards.append((key[0], dict(key[1]), last[key], number))
                    last[key] = number

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)] + [threading.Thread(target=watch,
                                                                                                 daemon=True)]
    new_master = None
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: served_ok[0] > 200, 10, 0.05, "load before the upgrade")
        new_master = _upgrade(proxy)
        count = served_ok[0]
        wait_for(lambda: served_ok[0] > count + 200, 10, 0.05, "load after the upgrade")
        stop.set()
        for thread in threads:
            thread.join(10)
        samples = scrape(proxy)
        by_members = value(samples, "mpm_balancer_member_requests_total")
        by_route = value(samples, "mpm_requests_total")
        assert not backwards, backwards[:5]
        assert by_members == by_route, f"the members counted {by_members:.0f} requests, the route {by_route:.0f}"
    finally:
        stop.set()
        if new_master is not None:
            _stop(proxy, new_master)
        one.close()
        two.close()
