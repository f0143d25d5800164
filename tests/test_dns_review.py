"""DNS discovery, review 2026-12-03-dns (docs/reviews/2026-12-03-dns/report.md): what a hostile
or broken DNS server, or a careless reload, did to the balancer members found in DNS.

Real processes: a real master and its workers (proxyproc.Proxy), real members
(balancer_util.Member) and a real DNS server on a free loopback port, UDP and TCP
(test_dns_hostile.HostileDns, or `Crafted` below for answers whose sections it builds itself).
Everything is stopped by pid at the end of each test."""

from __future__ import annotations

import collections
import json
import socket
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import psutil
import pytest
from admin_util import admin_section, scrape, value
from test_dns_hostile import HostileDns, listing, master_alive, served, until

ROUTES = [{"path": "/", "to": "balancer://app/"}]


class Crafted(HostileDns):
    """HostileDns whose answer sections the test writes: `sections` {(name, TYPE): [(owner,
    ttl, TYPE, rdata text), ...]} (records of any owner and type, written in this order, not
    shuffled as dnspython does by default); a question not in it is HostileDns's."""

    sections: dict = {}

    def _reply(self, wire: bytes, limit):
        query = dns.message.from_wire(wire)
        question = query.question[0]
        key = (question.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(question.rdtype))
        if key not in self.sections:
            return super()._reply(wire, limit)
        self.asked.append(key)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for owner, ttl, rdtype, text in self.sections[key]:
            code = dns.rdatatype.from_text(rdtype)
            rrset = response.find_rrset(response.answer, dns.name.from_text(owner), dns.rdataclass.IN, code,
                                        create=True)
            rrset.add(dns.rdata.from_text(dns.rdataclass.IN, code, text), ttl)
        return response.to_wire(want_shuffle=False)


@pytest.fixture
def servers():
    """DNS servers made by the test, stopped (and checked for errors) at teardown."""
    made: list[HostileDns] = []

    def make(kind=HostileDns) -> HostileDns:
        made.append(kind())
        return made[-1]
    yield make
    for server in made:
        server.stop()
    assert not [e for server in made for e in server.errors]



def questions_in_flight(pid: int, port: int) -> int:
    """The master's UDP sockets connected to the DNS server: one per question it waits for."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="udp")
               if c.raddr and c.raddr.port == port)


def test_many_balancers_share_one_bound_of_dns_questions_in_flight(proxy_factory, servers):
    """#1: 8 balancers of SRV 32 targets whose address questions go unanswered held 8 x 32
    sockets in the master (40 such balancers: every descriptor of a LimitNOFILE of 1024, and
    `mpmctl`, reloads and health probes failed with EMFILE).  Now every round shares a bound of
    128 questions in flight; once the addresses are answered, every balancer fills its 32 slots
    (the bound is given back, none is lost)."""
    server = servers()
    names = ["app", *(f"b{b}" for b in range(7))]
    server.records = {(f"_http._tcp.{b}.test", "SRV"): [(0, f"0 1 8080 t{i}.{b}.test.") for i in range(32)]
                      for b in names}
    server.silent = {"A", "AAAA"}
    balancers = {b: {"discover": {"dns": f"_http._tcp.{b}.test", "type": "SRV", "slots": 32, "interval": 0.2,
                                  "resolvers": [server.resolver], "timeout": 0.3}} for b in names}
    proxy = proxy_factory(ROUTES, workers=1, balancers=balancers)
    peak = 0

    def asked_many() -> bool:
        nonlocal peak
        peak = max(peak, questions_in_flight(proxy.proc.pid, server.port))
        return sum(1 for _, rdtype in server.asked if rdtype == "A") >= 128
    until(proxy, asked_many, 8, "128 address questions asked")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        peak = max(peak, questions_in_flight(proxy.proc.pid, server.port))
    assert 32 <= peak <= 128, f"{peak} DNS questions in flight at once in the master"   # before: 256
    master_alive(proxy)

    server.records = {**server.records, **{(f"t{i}.{b}.test", "A"): [(0, "127.0.0.1")]
                                           for b in names for i in range(32)}}
    server.silent = set()

    def filled() -> bool:
        listed = {b["name"]: len(b["members"]) for b in json.loads(proxy.mpmctl("balancer", "--json").stdout)["balancers"]}
        return all(listed.get(b) == 32 for b in names)
    until(proxy, filled, 10, "every balancer's 32 members")


def test_a_reload_that_renames_discover_dns_keeps_serving_until_the_new_name_answers(
        proxy_factory, servers, member):
    """#2: a reload that changed `discover.dns` (a migration to a new name, same member)
    started the new generation's balancer empty until the new name answered: here, with the
    first resolver of the new list dead (0.5 s), hundreds of 503.  Now the members found so
    far come along as departed: they serve meanwhile, and the new answer naming the same
    member brings it back from draining."""
    server = servers()
    server.records = {("old.test", "A"): [(0, "127.0.0.1")], ("new.test", "A"): [(0, "127.0.0.1")]}
    m = member("m")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)        # a resolver that never answers
    dead.bind(("127.0.0.1", 0))
    discover = {"type": "A", "port": m.port, "interval": 5, "timeout": 0.5}
    proxy = proxy_factory(ROUTES, workers=1, balancers={"app": {"discover": {
        "dns": "old.test", "resolvers": [server.resolver], **discover}}})
    until(proxy, lambda: served(proxy, 1) == {"m": 1}, 5, "the member of old.test")
    proxy.config["balancers"]["app"]["discover"] = {"dns": "new.test", **discover,
                                                    "resolvers": [f"127.0.0.1:{dead.getsockname()[1]}", server.resolver]}
    proxy.write_config()
    try:
        answers, stop = collections.Counter(), threading.Event()
        client = threading.Thread(target=lambda: [answers.update(served(proxy, 1)) for _ in iter(stop.is_set, True)])
        client.start()
        assert proxy.reload().returncode == 0
        until(proxy, lambda: ("new.test", "A") in server.asked, 5, "the new name asked")
        time.sleep(0.3)
        stop.set()
        client.join(10)
    finally:
        dead.close()
    assert set(answers) == {"m"} and answers["m"] >= 5, answers       # before: {'m': ..., 503: hundreds}
    url = f"http://127.0.0.1:{m.port}"
    until(proxy, lambda: {x["url"]: x["status"] for x in listing(proxy)["members"]} == {url: "enabled"}, 5,
          "the member back from draining")


def rounds(server, count: int, name: str, rdtype: str):
    """A predicate: `count` more questions for (name, TYPE) were asked since now."""
    mark = len(server.asked)
    return lambda: len(server.asked_since(mark, name, rdtype)) >= count


def test_records_of_other_names_in_an_answer_are_not_members(proxy_factory, servers, member):
    """#3: every A record of the answer section was a member, whatever its owner: an answer
    for app.test that also held `other.test A 127.0.0.3` split the traffic 3/3 with it.  Now
    only the name asked, or the end of its CNAME chain, counts, and the rest is logged."""
    server = servers(Crafted)
    m2 = member("m2", host="127.0.0.2")
    member("m3", host="127.0.0.3", port=m2.port)
    server.sections = {("app.test", "A"): [("app.test.", 0, "A", "127.0.0.2"), ("other.test.", 0, "A", "127.0.0.3")]}
    proxy = proxy_factory(ROUTES, workers=1, balancers={"app": {"discover": {
        "dns": "app.test", "type": "A", "port": m2.port, "resolvers": [server.resolver], "interval": 0.2,
        "timeout": 0.5}}})
    until(proxy, rounds(server, 2, "app.test", "A"), 5, "two rounds")
    urls = {x["url"]: x["status"] for x in listing(proxy)["members"]}
    assert urls == {f"http://127.0.0.2:{m2.port}": "enabled"}, urls        # before: 127.0.0.3 too
    assert served(proxy, 4) == {"m2": 4}
    assert "1 A records of other names than app.test. in its answer; left out" in proxy.error_text()

    server.sections = {("app.test", "A"): [("app.test.", 0, "CNAME", "real.test."), ("stray.test.", 0, "A", "127.0.0.2"),
                                           ("real.test.", 0, "A", "127.0.0.3")]}
    until(proxy, rounds(server, 2, "app.test", "A"), 5, "two more rounds")
    urls = {x["url"]: x["status"] for x in listing(proxy)["members"]}
    assert urls == {f"http://127.0.0.2:{m2.port}": "drain", f"http://127.0.0.3:{m2.port}": "enabled"}, urls
    assert served(proxy, 4) == {"m3": 4}


def test_duplicate_srv_records_take_the_best_whatever_their_order_and_port_0_is_left_out(
        proxy_factory, servers, member):
    """#4: of two SRV records for one target and port (priority 1 weight 1, priority 0 weight
    30), the first in the answer made the member.  Resolvers rotate records (and dnspython's
    server shuffles them): the member flapped between hot-standby/1 and enabled/30 with the
    same records (9 of 12 looks hot-standby).  Now the best record (lowest priority, then
    largest weight) whatever the order; here the worse one comes first.
    #5: `0 10 0 zero.test` became member http://zero.test:0, listed enabled, and requests
    failed over from it.  Port 0 is reserved: the record is left out, and the log says so."""
    server = servers(Crafted)
    m = member("m")
    name = "_http._tcp.app.test."
    server.sections = {("_http._tcp.app.test", "SRV"): [(name, 0, "SRV", f"1 1 {m.port} a.test."),
                                                        (name, 0, "SRV", f"0 10 {m.port} b.test."),
                                                        (name, 0, "SRV", f"0 30 {m.port} a.test."),
                                                        (name, 0, "SRV", "0 10 0 zero.test.")]}
    server.records = {(t, "A"): [(0, "127.0.0.1")] for t in ("a.test", "b.test", "zero.test")}
    proxy = proxy_factory(ROUTES, workers=1, balancers={"app": {"discover": {
        "dns": "_http._tcp.app.test", "type": "SRV", "resolvers": [server.resolver], "interval": 0.2,
        "timeout": 0.5}}})
    until(proxy, rounds(server, 2, "_http._tcp.app.test", "SRV"), 5, "two rounds")
    listed = {x["url"]: (x["status"], x["weight"]) for x in listing(proxy)["members"]}
    # before: a.test hot-standby/1 (#4), and http://zero.test:0 enabled/10 (#5)
    assert listed == {f"http://a.test:{m.port}": ("enabled", 30), f"http://b.test:{m.port}": ("enabled", 10)}, listed
    assert "SRV record for zero.test has port 0; left out" in proxy.error_text()


def test_metrics_say_when_dns_discovery_fails_and_how_old_the_members_are(proxy_factory, servers, member):
    """#6: a failing resolver keeps the last good set, and only `mpmctl balancer` said so: an
    operator alerting on /metrics saw nothing.  Now per balancer: failed lookups (a counter),
    failed in a row now, and the age of the last good answer."""
    server = servers()
    m = member("m")
    server.records = {("app.test", "A"): [(0, "127.0.0.1")]}
    proxy = proxy_factory(ROUTES, workers=1, admin=admin_section(), balancers={"app": {"discover": {
        "dns": "app.test", "type": "A", "port": m.port, "resolvers": [server.resolver], "interval": 0.2,
        "timeout": 0.5}}})
    until(proxy, rounds(server, 2, "app.test", "A"), 5, "two rounds")
    samples = scrape(proxy)
    assert value(samples, "mpm_balancer_dns_failing", balancer="app") == 0
    assert ("mpm_balancer_dns_failures_total", frozenset({("balancer", "app")})) in samples     # before: absent
    assert 0 <= value(samples, "mpm_balancer_dns_answer_age_seconds", balancer="app") < 2

    server.rcodes = {("app.test", "A"): "SERVFAIL"}
    until(proxy, lambda: value(scrape(proxy), "mpm_balancer_dns_failing", balancer="app") >= 2, 5, "failing rounds")
    samples = scrape(proxy)
    assert value(samples, "mpm_balancer_dns_failures_total", balancer="app") >= 2
    assert served(proxy, 2) == {"m": 2}                                 # the last good set still serves
