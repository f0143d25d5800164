"""Issue #7: lbmethod `hash` is consistent: two proxy instances that never talk agree on
every key, and adding a member moves only the keys it wins (at most 1.5/N of them)."""

from __future__ import annotations

import pytest
from balancer_util import KeepAlive, Member, members_section

KEYS = [f"user-{i}" for i in range(300)]


@pytest.fixture
def five():
    members = [Member(f"m{i}") for i in range(5)]
    yield members
    for member in members:
        member.close()


def assignment(proxy, source: str) -> dict[str, str]:
    client = KeepAlive(proxy)
    try:
        header = "X-User: {}\r\n" if source == "header" else "Cookie: theme=dark; session={}\r\n"
        return {key: client.get("/", header.format(key))[2].decode() for key in KEYS}
    finally:
        client.close()


def hash_routes(members, source: str) -> dict:
    return {"app": members_section(members, method="hash",
                                   hash_key={"source": source, "name": "X-User" if source == "header" else "session"})}


@pytest.mark.parametrize("source", ["header"])     # cookie keys: test_balancer_unit.py
def test_instances_agree_and_an_added_member_moves_few_keys(proxy_factory, five, source):
    routes = [{"path": "/", "to": "balancer://app/"}]
    first = proxy_factory(routes, workers=1, balancers=hash_routes(five[:4], source))
    second = proxy_factory(routes, workers=2, balancers=hash_routes(five[:4], source))
    before = assignment(first, source)
    assert assignment(second, source) == before          # no shared state between them
    assert set(before.values()) == {"m0", "m1", "m2", "m3"}
    second.config["balancers"] = hash_routes(five, source)
    second.write_config()
    assert second.reload().returncode == 0
    second.wait_ready(generation=2)
    after = assignment(second, source)
    moved = [key for key in KEYS if after[key] != before[key]]
    assert len(moved) <= 1.5 / 5 * len(KEYS)
    assert all(after[key] == "m4" for key in moved)       # only to the new member, never between old ones
    assert len(moved) >= 0.5 / 5 * len(KEYS)              # and it does get its share
