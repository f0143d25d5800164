"""Issue #7: the lbmethods through a real master with two workers and real backends.

One proxy serves a balancer per method over the same three members (weights 1:2:3), and
requests come over four keep-alive connections taken in turn, so both workers pick and
the shares are decided server-wide."""

from __future__ import annotations

import collections
import json

import pytest
from balancer_util import KeepAlive, Member, members_section
from proxyproc import running_proxy

WEIGHTS = [1, 2, 3]
METHODS = ("byrequests", "bytraffic", "bybusyness", "hash")


@pytest.fixture(scope="module")
def members():
    started = [Member(name) for name in ("a", "b", "c")]
    yield started
    for member in started:
        member.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, members):
    balancers = {method: members_section(members, WEIGHTS, method=method) for method in METHODS}
    balancers["hash"]["hash_key"] = {"source": "header", "name": "X-Key"}
    balancers["smooth"] = members_section(members[:2], [3, 1])
    routes = [{"path": f"/{name}/", "to": f"balancer://{name}/"} for name in balancers]
    with running_proxy(tmp_path_factory.mktemp("methods"), routes, balancers=balancers) as proxy:
        yield proxy


def shares(proxy, path: str, n: int, connections: int = 4, key=None) -> collections.Counter:
    clients = [KeepAlive(proxy) for _ in range(connections)]
    counts = collections.Counter()
    try:
        for i in range(n):
            headers = f"X-Key: user-{key(i)}\r\n" if key else ""
            status, _, body = clients[i % connections].get(path, headers)
            assert status == 200
            counts[body.decode()] += 1
    finally:
        for client in clients:
            client.close()
    return counts


@pytest.mark.parametrize("method", METHODS)
def test_weight_ratios_hold_over_1000_requests(proxy, method):
    counts = shares(proxy, f"/{method}/", 1000, key=(lambda i: i) if method == "hash" else None)
    assert sum(counts.values()) == 1000
    for name, weight in zip("abc", WEIGHTS, strict=True):
        expected = 1000 * weight / sum(WEIGHTS)
        if method == "hash":
            # A hash of 1,000 distinct keys is a sample: its shares are held to 5 points.
            assert abs(counts[name] - expected) <= 50, counts
        else:
            assert abs(counts[name] - expected) <= 0.05 * expected, counts


def test_byrequests_interleaves_smoothly_across_workers(proxy):
    """3:1 gives A A B A, not A A A B, even when the requests alternate between two
    connections (and so, most likely, between the two workers)."""
    clients = [KeepAlive(proxy) for _ in range(2)]
    try:
        order = "".join(clients[i % 2].get("/smooth/")[2].decode() for i in range(12))
    finally:
        for client in clients:
            client.close()
    assert order == "aaba" * 3


def test_balancer_manager_counts_requests_and_bytes(proxy):
    shares(proxy, "/bytraffic/", 12, connections=1)
    listing = proxy.mpmctl("balancer", "--json")
    assert listing.returncode == 0, listing.stderr
    balancers = {b["name"]: b for b in json.loads(listing.stdout)["balancers"]}
    members = balancers["bytraffic"]["members"]
    assert [m["route"] for m in members] == ["a", "b", "c"]
    assert all(m["status"] == "enabled" and m["state"] == "ok" and m["busy"] == 0 for m in members)
    assert sum(m["requests"] for m in members) >= 12 and all(m["bytes"] > 0 for m in members)
    text = proxy.mpmctl("balancer").stdout
    assert "balancer://bytraffic  method bytraffic" in text and members[0]["url"] in text
