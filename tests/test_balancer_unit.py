"""Issue #7, in one process: the shared member table (shm/members.py), the pick logic
(worker/balancer.py, worker/lbpick.py), and the configuration keys that feed them (conf/balancers.py)."""

from __future__ import annotations

import collections
import os
import selectors
import socket
import textwrap
import time

import pytest
from balancer_util import Member
from balancer_util import request_head as head

from conf import ConfigError, load_config
from mpm.health import HealthChecker
from shm.members import DOWN, MemberTable
from worker.balancer import Balancers


def config(tmp_path, balancer: str, n: int = 3, weights=None, extra_member: str = ""):
    members = "\n".join(f'      - {{url: "http://127.0.0.1:{9001 + i}", route: m{i}, '
                        f'weight: {(weights or [1] * n)[i]}{extra_member if i == 0 else ""}}}' for i in range(n))
    path = tmp_path / "lb.yaml"
    path.write_text(f'listen: ["127.0.0.1:8000"]\nbalancers:\n  c:\n{textwrap.indent(balancer, "    ")}'
                    f'    members:\n{members}\nroutes:\n  - {{path: /, to: "balancer://c/"}}\n')
    return load_config(str(path))


def balancers(cfg, logs=None, cells: int = 4) -> Balancers:
    table = MemberTable(cfg.balancers, cells)
    return Balancers(cfg.balancers, table, lambda level, msg: (logs if logs is not None else []).append(msg),
                     os.getpid())


def pick(lb: Balancers, headers: str = "", target: str = "/", client: bytes = b"10.0.0.1", tried=()) -> int | None:
    backend, member, cookie = lb.pick("c", head(headers, target), client, tried)
    if member is not None:
        lb.end(member, 100)
    return member


def test_byrequests_is_smooth_and_server_wide(tmp_path):
    cfg = config(tmp_path, "method: byrequests\n", 2, [3, 1])
    table = MemberTable(cfg.balancers, 4)
    one = Balancers(cfg.balancers, table, print, 1001)      # two workers, one table
    two = Balancers(cfg.balancers, table, print, 1002)
    assert (one.cell, two.cell) == (0, 1)
    order = [pick(one if i % 2 else two) for i in range(8)]
    assert order == [0, 0, 1, 0] * 2


def test_bybusyness_counts_every_workers_open_exchanges(tmp_path):
    cfg = config(tmp_path, "method: bybusyness\n", 2)
    table = MemberTable(cfg.balancers, 4)
    one, two = (Balancers(cfg.balancers, table, print, pid) for pid in (1001, 1002))
    _, first, _ = one.pick("c", head(), b"")          # held open in worker one
    _, second, _ = two.pick("c", head(), b"")         # worker two sees it: the other member
    assert first != second
    one.end(first, 0)
    assert two.pick("c", head(), b"")[1] == first     # now the least busy
    assert table.busy_of(first) == 1 and table.busy_of(second) == 1
    table.release_dead({1001})                         # worker two died: its counts go, its requests stay
    assert table.busy_of(second) == 0 and table.total(first, "requests") + table.total(second, "requests") == 3


def test_rendezvous_hash_moves_only_the_keys_a_new_member_wins(tmp_path):
    keys = [f"user-{i}".encode() for i in range(1000)]
    for n in (3, 5, 9):
        small = balancers(config(tmp_path, "method: hash\nhash_key: {source: header, name: X-Key}\n", n))
        large = balancers(config(tmp_path, "method: hash\nhash_key: {source: header, name: X-Key}\n", n + 1))
        before = [pick(small, f"X-Key: {k.decode()}\r\n") for k in keys]
        after = [pick(large, f"X-Key: {k.decode()}\r\n") for k in keys]
        moved = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
        assert len(moved) <= 1.5 / (n + 1) * len(keys)
        assert {a for _, a in moved} == {n}          # only to the new member


def test_hash_sources_and_a_member_down_moves_only_its_keys(tmp_path):
    lb = balancers(config(tmp_path, "method: hash\nhash_key: {source: cookie, name: sid}\n", 4))
    keys = [f"sid=s{i}" for i in range(400)]
    before = [pick(lb, f"Cookie: a=1; {k}; b=2\r\n") for k in keys]
    assert pick(lb, "Cookie: sid=s7\r\n") == before[7]
    assert len({pick(lb, client=b"10.0.0.%d" % i) for i in range(40)}) > 1   # no cookie: the client address
    lb.table.error_until[2] = 1e18                     # member 2 in error state
    after = [pick(lb, f"Cookie: {k}\r\n") for k in keys]
    assert all(was == now for was, now in zip(before, after, strict=True) if was != 2)
    assert 2 not in after
    lb = balancers(config(tmp_path, "method: hash\n", 4))                     # source: client
    assert pick(lb, client=b"192.0.2.7") == pick(lb, client=b"192.0.2.7")


@pytest.mark.parametrize("cookie, expected", [
    ("ROUTEID=abc.m2", 2), ("x=1; ROUTEID=a.b.m1; y=2", 1), ("ROUTEID=m1", None), ("ROUTEID=.nobody", None),
    ("OTHERROUTEID=x.m2", None),
])
def test_apache_sticky_cookie(tmp_path, cookie, expected):
    lb = balancers(config(tmp_path, "sticky: ROUTEID\n", 3))
    picks = {pick(lb, f"Cookie: {cookie}\r\n") for _ in range(6)}
    assert picks == ({expected} if expected is not None else {0, 1, 2})


def test_sticky_url_parameter_and_insert_mode(tmp_path):
    lb = balancers(config(tmp_path, "sticky: JSESSIONID\n", 3))
    assert {pick(lb, target="/app;jsessionid=x/?JSESSIONID=ABC.m1") for _ in range(3)} == {1}
    lb = balancers(config(tmp_path, "sticky: {cookie: SRV, insert: true}\n", 3))
    backend, member, cookie = lb.pick("c", head(), b"")
    assert cookie == f"Set-Cookie: SRV=m{member}; Path=/; HttpOnly\r\n".encode()
    assert lb.pick("c", head("Cookie: SRV=m2\r\n"), b"")[1:] == (2, None)


def test_statuses_standby_drain_nofailover_and_forced_recovery(tmp_path):
    cfg = config(tmp_path, "sticky: R\nnofailover: true\n", 3, extra_member=", status: drain")
    logs = []
    lb = balancers(cfg, logs)
    assert {pick(lb) for _ in range(6)} == {1, 2}                 # m0 drains: no new clients
    assert pick(lb, "Cookie: R=x.m0\r\n") == 0                    # but its sticky ones
    lb.failed(1, "connect failed", connect=True)                   # m1 in error state for retry (60 s)
    assert "in error state for 60s: connect failed" in logs[0]
    assert {pick(lb) for _ in range(4)} == {2}
    assert pick(lb, "Cookie: R=x.m1\r\n") is None                  # nofailover: 503
    assert pick(lb, tried=(2,)) == 1                               # forcerecovery before giving up
    lb.table.set_status(2, "disabled")
    assert pick(lb, "Cookie: R=x.m2\r\n") is None

    cfg = config(tmp_path, "method: bybusyness\n", 3, extra_member=", status: hot-standby")
    lb = balancers(cfg)
    assert {pick(lb) for _ in range(6)} == {1, 2}
    lb.table.set_status(1, "disabled")
    lb.table.health[2] = DOWN                                      # m2: a health check holds it down
    assert {pick(lb) for _ in range(3)} == {0}                     # only now the standby


def test_max_connections(tmp_path):
    lb = balancers(config(tmp_path, "method: byrequests\n", 2, extra_member=", max_connections: 1"))
    _, first, _ = lb.pick("c", head(), b"")
    assert first == 0
    assert {lb.pick("c", head(), b"")[1] for _ in range(3)} == {1}     # m0 full while its one is open


def test_carry_health_across_reload_and_cells(tmp_path):
    cfg = config(tmp_path, "method: byrequests\nhealth: {method: GET, path: /health}\n", 2)
    old = MemberTable(cfg.balancers, 2)
    assert old.record_check(1, False, passes=1, fails=2) is None
    assert old.record_check(1, False, passes=1, fails=2) == "down"
    unchecked = MemberTable(config(tmp_path, "method: byrequests\n", 2).balancers, 2)
    unchecked.carry_from(old)             # checks removed: nothing would bring it back up
    assert unchecked.state(1)["health"] == "up"
    new = MemberTable(cfg.balancers, 2)
    new.carry_from(old)
    assert new.state(1)["health"] == "down" and new.state(0)["health"] == "up"
    assert new.record_check(1, True, passes=1, fails=2) == "up"
    assert [new.claim(p) for p in (1, 2, 3)] == [0, 1, -1]
    new.release_dead({2})
    assert new.claim(3) == 0


BAD = {
    "hash_key without hash": ("method: byrequests\nhash_key: {source: header, name: X}\n",
                              "hash_key only applies to method: hash"),
    "header without name": ("method: hash\nhash_key: {source: header}\n", "with source header needs a 'name'"),
    "bad status": ("failonstatus: [503, 700]\n", "failonstatus must be HTTP status codes"),
    "bad health method": ("health: {method: POST}\n", "health.method must be one of TCP, GET, HEAD, OPTIONS"),
    "tcp with path": ("health: {path: /x}\n", "health.path only applies to GET, HEAD and OPTIONS checks"),
    "bad expect": ("health: {method: GET, expect: '('}\n", "health.expect is not a valid regular expression"),
    "negative retry": ("retry: -1\n", "retry must be a number >= 0"),
    "bad cookie": ("sticky: {cookie: 'a b', insert: true}\n", "is not a valid cookie name"),
    "unknown key": ("stickysession: X\n", "unknown key 'stickysession'"),
}


@pytest.mark.parametrize("name", BAD)
def test_config_errors(tmp_path, name):
    text, message = BAD[name]
    with pytest.raises(ConfigError) as info:
        config(tmp_path, text, 2)
    assert any(message in error for error in info.value.errors), info.value.errors


def test_config_keys(tmp_path):
    cfg = config(tmp_path, textwrap.dedent("""\
        method: hash
        hash_key: {source: cookie, name: sid}
        sticky: {cookie: SRV, insert: true}
        nofailover: true
        failonstatus: 503
        retry: 0
        health: {method: head, path: /up, expect: "^(200|204)$", interval: 2, passes: 2, fails: 3, timeout: 1}
        """), 2)
    c = cfg.balancers["c"]
    assert (c.sticky, c.sticky_insert, c.nofailover, c.failonstatus, c.retry) == ("SRV", True, True, (503,), 0.0)
    assert (c.hash_key.source, c.hash_key.name) == ("cookie", "sid")
    h = c.health
    assert (h.method, h.path, h.expect.pattern, h.interval, h.passes, h.fails, h.timeout) == \
        ("HEAD", "/up", "^(200|204)$", 2.0, 2, 3, 1.0)
    assert config(tmp_path, "", 2).balancers["c"].health is None
    lb = balancers(config(tmp_path, "", 2))
    assert collections.Counter(pick(lb) for _ in range(10)) == {0: 5, 1: 5}     # byrequests by default


def test_health_checks_run_in_a_selector_loop(tmp_path):
    """mpm/health.py without a master: a status outside `expect` and a silent member fail,
    a good one passes, and a member in passive error state comes back after `passes`."""
    good, bad = Member("good"), Member("bad", status=500)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                      # connects complete in the kernel; nobody ever answers
    path = tmp_path / "hc.yaml"
    path.write_text(textwrap.dedent(f"""\
        listen: ["127.0.0.1:8000"]
        balancers:
          c:
            health: {{method: GET, path: /hc, interval: 0.1, timeout: 0.3, passes: 2}}
            members:
              - {{url: "{good.url}"}}
              - {{url: "{bad.url}"}}
              - {{url: "http://127.0.0.1:{silent.getsockname()[1]}"}}
        routes:
          - {{path: /, to: "balancer://c/"}}
        """))
    cfg = load_config(str(path))
    selector = selectors.DefaultSelector()
    table = MemberTable(cfg.balancers, 2)
    checker = HealthChecker(selector)
    checker.configure(table)
    lb = Balancers(cfg.balancers, table, lambda *a: None, os.getpid())
    lb.failed(0, "connect failed", connect=True)          # passive: in error for 60 s

    def run(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key, _ in selector.select(0.02):
                key.data()
            checker.tick()
    try:
        run(0.8)
        states = [table.state(i) for i in range(3)]
        assert [s["health"] for s in states] == ["up", "down", "down"]
        assert states[0]["state"] == "ok"                  # two passing checks ended the error state
        assert all(path["target"] == "/hc" for path in good.requests) and len(good.requests) >= 2
    finally:
        checker.close()
        selector.close()
        silent.close()
        good.close()
        bad.close()
