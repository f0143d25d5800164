"""Issue #18, in one process: how DNS answers become member rows (mpm/slots.py), what a worker
makes of rows that change hands (worker/balancer.py), a DNS question's timeouts and retries
(mpm/dnsquery.py, against real sockets), and the `discover:` configuration keys."""

from __future__ import annotations

import os
import selectors
import socket
import textwrap
import threading
import time

import dns.message
import dns.rcode
import pytest
from balancer_util import request_head as head

from conf import ConfigError, load_config
from conf.discover import system_resolvers
from mpm import slots
from mpm.dnslookup import Found
from mpm.dnsquery import DnsQuery
from shm.members import DOWN, EMPTY, MemberTable
from worker.backend import Origins
from worker.balancer import Balancers


def config(tmp_path, discover: str, balancer: str = "", members: str = ""):
    path = tmp_path / "dns.yaml"
    path.write_text(textwrap.dedent("""\
        listen: ["127.0.0.1:8000"]
        balancers:
          app:
        """) + textwrap.indent(balancer + members + f"discover: {discover}\n", "    ")
        + 'routes:\n  - {path: /, to: "balancer://app/"}\n')
    return load_config(str(path))


A = '{dns: app.test, type: A, port: 8080, slots: 4, hold: 5, resolvers: ["127.0.0.1:53"]}'
SRV = '{dns: _http._tcp.app.test, slots: 3, resolvers: ["127.0.0.1"]}'


def workers_side(cfg, table) -> Balancers:
    return Balancers(cfg.balancers, table, lambda *a: None, os.getpid(), Origins())


def pick(lb: Balancers, headers: str = "") -> int | None:
    """A whole exchange: picked, then ended."""
    _, index, _ = lb.pick("app", head(headers), b"")
    if index is not None:
        lb.end(index, 0)
    return index


class FakeTunnel:
    """What `Balancers.expired` looks at: the context a tunnel carries and its on_close (which
    knows the row the tunnel counts on), and nothing else."""

    def __init__(self, lb, index: int | None = None):
        self.context = {"lb": None if index is None else lb.key(index)}
        self.on_close = None if index is None else lb.tunnel_closer(index, lambda tunnel, reason: None)


def test_found_members_take_rows_drain_and_free_them(tmp_path):
    cfg = config(tmp_path, A, members='members: [{url: "http://127.0.0.1:9001", route: s}]\n')
    table = MemberTable(cfg.balancers, 2)
    lb = workers_side(cfg, table)
    assert [pick(lb) for _ in range(2)] == [0, 0]            # only the static member yet
    found = [Found(a, a, 8080, 1, 0) for a in ("10.0.0.1", "10.0.0.2")]
    assert slots.place(table, "app", found, health_checks=False, seen=time.time()) == (True, 0)
    assert table.listed("app") == [0, 1, 2] and table.url(1) == "http://10.0.0.1:8080"
    assert {pick(lb) for _ in range(6)} == {0, 1, 2}        # the worker sees the new membership at once
    assert lb.backends[1].backend.sockaddr == ("10.0.0.1", 8080)
    assert lb.backends[1].host_line == b"Host: app.test:8080\r\n"     # A members: the name asked

    slots.place(table, "app", found[1:], health_checks=False, seen=time.time())   # 10.0.0.1 left DNS
    assert table.state(1)["status"] == "drain" and table.leaving[1]
    assert 1 not in {pick(lb) for _ in range(6)}
    lb.busy[1] += 1                                          # a tunnel still open on it
    assert not slots.settle(table, "app", table.busy_of)     # within hold: it stays
    table.leaving[1] -= 10                                   # ... and now hold (5 s) has passed
    slots.settle(table, "app", table.busy_of)
    assert table.state(1)["status"] == "gone"
    tunnels = [FakeTunnel(lb, 1), FakeTunnel(lb, 2), FakeTunnel(lb)]
    assert lb.expired(tunnels) == tunnels[:1]                # the worker closes that one
    lb.end(1, 0)
    assert slots.settle(table, "app", table.busy_of)         # nothing open: the row is free
    assert table.status[1] == EMPTY and table.listed("app") == [0, 2]
    slots.place(table, "app", [Found("10.0.0.3", "10.0.0.3", 8080, 1, 0)] + found[1:], False, time.time())
    assert table.url(1) == "http://10.0.0.3:8080" and table.total(1, "requests") == 0    # counts start at zero
    assert {pick(lb) for _ in range(6)} == {0, 1, 2}


def test_newcomers_wait_for_rows_that_departed_members_still_hold(tmp_path):
    table = MemberTable(config(tmp_path, A).balancers, 2)             # 4 slots
    first = [Found(f"10.0.0.{i}", f"10.0.0.{i}", 8080, 1, 0) for i in range(1, 5)]
    slots.place(table, "app", first, False, time.time())
    table.cell_view("busy", table.claim(4321))[0] += 1              # .1 still has a tunnel open
    second = first[2:] + [Found(f"10.0.0.{i}", f"10.0.0.{i}", 8080, 1, 0) for i in (5, 6)]
    assert slots.place(table, "app", second, False, time.time()) == (False, 2)   # all 4 rows held
    assert not slots.settle(table, "app", table.busy_of)             # within hold, nobody waiting: kept
    assert slots.settle(table, "app", table.busy_of, needed=True)    # .2 had nothing open: freed for them
    assert slots.place(table, "app", second, False, time.time()) == (True, 1)
    assert sorted(table.url(i) for i in table.listed("app")) == \
        [f"http://10.0.0.{i}:8080" for i in (1, 3, 4, 5)]


def test_srv_priority_weight_address_change_and_health_gate(tmp_path):
    cfg = config(tmp_path, SRV, balancer="health: {interval: 1}\nsticky: {cookie: S, insert: true}\n")
    table = MemberTable(cfg.balancers, 2)
    lb = workers_side(cfg, table)
    found = [Found("a.test", "10.0.0.1", 81, 10, 0), Found("b.test", "10.0.0.2", 82, 30, 0),
             Found("c.test", "10.0.0.3", 83, 5, 1)]
    slots.place(table, "app", found, health_checks=True, seen=time.time())
    assert [table.state(i)["status"] for i in range(3)] == ["enabled", "enabled", "hot-standby"]
    assert [table.weight[i] for i in range(3)] == [10, 30, 5]
    assert all(table.health[i] == DOWN for i in range(3))    # no traffic before a passing check
    assert pick(lb) is None
    for i in range(3):
        table.record_check(i, True, passes=1, fails=1)
    origin, index, cookie = lb.pick("app", head(), b"")
    assert index in (0, 1) and cookie == f"Set-Cookie: S={table.route(index)}; Path=/; HttpOnly\r\n".encode()
    assert pick(lb, f"Cookie: S={table.route(1)}\r\n") == 1          # sticky to a found member
    assert lb.backends[0].host_line == b"Host: a.test:81\r\n"         # SRV members: the target
    table.set_weight(0, 50)                                  # the operator's weight stands ...
    slots.place(table, "app", found, True, time.time())
    assert table.weight[0] == 50
    moved = [Found("a.test", "10.0.0.9", 81, 20, 0)] + found[1:]   # ... until DNS changes it; a new address
    before = lb.backends[0]
    assert slots.place(table, "app", moved, True, time.time())[0]
    assert table.weight[0] == 20 and table.health[0] == table.health[1]   # same member, same row, health kept
    assert lb.pick("app", head(f"Cookie: S={table.route(0)}\r\n"), b"")[0].backend.sockaddr == ("10.0.0.9", 81)
    assert lb.backends[0] is not before and lb.backends[0].name == "http://a.test:81"   # a fresh Origin


def test_a_reload_carries_the_found_members(tmp_path):
    cfg = config(tmp_path, A)
    old = MemberTable(cfg.balancers, 2)
    slots.place(old, "app", [Found(a, a, 8080, 1, 0) for a in ("10.0.0.1", "10.0.0.2")], False, time.time())
    old.record_check(1, False, passes=1, fails=1)
    slots.place(old, "app", [Found("10.0.0.1", "10.0.0.1", 8080, 1, 0)], False, time.time())   # .2 drains
    unchecked = MemberTable(load_config(cfg.file).balancers, 2)      # without checks: their verdict goes
    slots.carry(old, unchecked, "app")
    assert unchecked.state(1)["health"] == "up" and unchecked.state(1)["status"] == "drain"
    new = MemberTable(config(tmp_path, A, balancer="health: {method: GET, path: /health}\n").balancers, 2)
    slots.carry(old, new, "app")
    assert [new.url(i) for i in new.listed("app")] == ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
    assert new.state(1)["health"] == "down" and new.state(1)["status"] == "drain" and new.leaving[1]
    assert new.find(("app", "http://10.0.0.2:8080")) == 1 and new.membership[0] > 0


class Servfail:
    """A resolver that answers every question with SERVFAIL: a thread on a real UDP socket."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.asked = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.asked += 1
            answer = dns.message.make_response(dns.message.from_wire(data))
            answer.set_rcode(dns.rcode.SERVFAIL)
            self.sock.sendto(answer.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


def test_a_question_goes_to_the_next_resolver_after_servfail_or_silence(dns_server):
    """A resolver that answers SERVFAIL is left at once; one that never answers (a bound UDP
    socket nobody reads) costs `timeout`; then the next one answers.  When none answers, the
    question fails after its attempts, with every socket closed."""
    dns_server.records({"app.test": ["10.1.2.3"]})
    servfail = Servfail()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    selector = selectors.DefaultSelector()
    results = []

    def run(query, limit: float) -> float:
        started = time.monotonic()
        while not results and time.monotonic() - started < limit:
            for key, _ in selector.select(0.05):
                key.data()
            query.tick(time.monotonic())
        return time.monotonic() - started
    try:
        resolvers = [servfail.sock.getsockname(), silent.getsockname(), ("127.0.0.1", dns_server.port)]
        took = run(DnsQuery(selector, "app.test", "A", resolvers, 0.3, lambda *r: results.append(r)), 5)
        answer, error = results.pop()
        assert error == "" and [rd.address for rd in answer.answer[0]] == ["10.1.2.3"] and took >= 0.3
        assert servfail.asked == 1
        dns_server.stop()                                    # refused, at once, by the kernel
        took = run(DnsQuery(selector, "app.test", "A", resolvers, 0.3, lambda *r: results.append(r)), 5)
        answer, error = results.pop()
        assert answer is None and "no answer within 0.3s" in error and "refused" in error.lower()
        assert took < 2.0 and not selector.get_map()         # every socket closed and unregistered
    finally:
        selector.close()
        silent.close()
        servfail.close()


BAD = {
    "type": ("{dns: app.test, type: MX}", "discover.type must be one of SRV, A, AAAA"),
    "port with SRV": ("{dns: _x._tcp.app.test, port: 80}", "discover.port only applies to type A or AAAA"),
    "no dns": ("{type: A}", "is missing 'dns'"),
    "name": ("{dns: 'app..test', type: A}", "is not a DNS name"),
    "resolver": ("{dns: app.test, type: A, resolvers: [dns.example]}", "a resolver is a numeric IP address"),
    "interval": ("{dns: app.test, type: A, interval: 0.01}", "discover.interval must be at least 0.2"),
    "slots": ("{dns: app.test, type: A, slots: 0}", "discover.slots must be an integer from 1 to 1024"),
    "tls on http": ("{dns: app.test, type: A, tls: {verify: false}}", "discover.tls only applies to scheme https"),
    "unknown key": ("{dns: app.test, type: A, hold_time: 3}", "unknown key 'hold_time' in balancers.app.discover "
                                                              "(did you mean 'hold'?)"),
    "max_ttl": ("{dns: app.test, type: A, max_ttl: -5}", "discover.max_ttl must be a number >= 0"),
    "max_ttl text": ("{dns: app.test, type: A, max_ttl: 1h}", "discover.max_ttl must be a number >= 0"),
    "max_ttl typo": ("{dns: app.test, type: A, max_tll: 30}", "unknown key 'max_tll' in balancers.app.discover "
                                                              "(did you mean 'max_ttl'?)"),
}


@pytest.mark.parametrize("name", BAD)
def test_discover_config_errors(tmp_path, name):
    text, message = BAD[name]
    with pytest.raises(ConfigError) as info:
        config(tmp_path, text[:-1] + ', resolvers: ["127.0.0.1"]}' if "resolvers" not in text else text)
    assert any(message in error and error.startswith(f"{tmp_path}/dns.yaml:") for error in info.value.errors), \
        info.value.errors


def test_discover_config_keys_and_the_system_resolvers(tmp_path):
    d = config(tmp_path, '{dns: "_http._tcp.app.test.", scheme: wss, tls: {verify: false}, slots: 8, interval: 2, '
                         'hold: 0, timeout: 1, resolvers: ["10.0.0.2", "[::1]:5353", "127.0.0.1:53"]}',
               balancer="sticky: ROUTEID\n").balancers["app"].discover
    assert (d.dns, d.rtype, d.port, d.scheme, d.tls.verify, d.slots, d.interval, d.hold, d.timeout, d.max_ttl) == \
        ("_http._tcp.app.test", "SRV", 0, "wss", False, 8, 2.0, 0.0, 1.0, 60.0)
    assert d.resolvers == (("10.0.0.2", 53), ("::1", 5353), ("127.0.0.1", 53))
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nsearch example\nnameserver 10.9.8.7\nnameserver fe80::1%eth0\nnameserver bad\n")
    assert system_resolvers(str(resolv)) == (("10.9.8.7", 53), ("fe80::1", 53))
    with pytest.raises(ConfigError) as info:             # no members and no discover: still an error
        load_config(str(_write(tmp_path, "listen: ['127.0.0.1:8000']\nbalancers:\n  app: {method: hash}\n")))
    assert "balancers.app is missing 'members'" in info.value.errors[0]


def _write(tmp_path, text: str):
    path = tmp_path / "plain.yaml"
    path.write_text(text)
    return path
