"""DNS discovery against a broken or hostile DNS server (commit 15741fb; review sections 1, 2,
3, 4, 6 and 11): one odd answer, or a resolver going away at the wrong moment, took the
master down (and every worker with it), crash-looped every worker, froze the balancer, or
made `mpmctl reload` powerless against a long TTL.

Real processes, as in test_balancer_dns.py: a real master and its workers (proxyproc.Proxy),
real members (balancer_util.Member threads on 127.0.0.x), and a real DNS server on a free
loopback port, UDP and TCP, that the master asks every `interval`.

The DNS server is `HostileDns` below, a small dnspython server in two threads of the test
process, not dnsmasq (balancer_util.DnsServer): these faults need answers dnsmasq cannot be
made to give.  dnsmasq cannot add a record of class HS next to the IN ones, its
`srv-host` takes a plain host name (no SRV target with escaped bytes or an escaped dot), it
cannot SERVFAIL one chosen name while it answers the others, and it cannot leave one type of
question unanswered until it goes away in the middle of a round.  Here each test sets what
the server answers, and the change applies to the next question.
"""

from __future__ import annotations

import collections
import json
import select
import socket
import subprocess
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import psutil
import pytest
from balancer_util import KeepAlive
from support import wait_for

ROUTES = [{"path": "/", "to": "balancer://app/"}]
SRV_NAME = "_http._tcp.app.test"
INTERVAL = 0.2                  # conf/discover.py INTERVAL_MIN: a round every housekeeping tick or so


class HostileDns:
    """A DNS server on 127.0.0.1 and a port the OS picked (UDP and TCP on the same number),
    answering in its own threads from what the test sets:

    - `records`: {(name, TYPE): [(ttl, rdata text) or (ttl, rdata text, CLASS)]}: the answer
      section (CLASS defaults to IN); a name with no entry at all gets NXDOMAIN, a known name
      without that type an empty NOERROR answer;
    - `rcodes`: {(name, TYPE): "SERVFAIL", ...}: that question gets this rcode and no record;
    - `silent`: TYPEs whose questions get no answer at all (held for ever).

    Replace these whole (`server.records = {...}`), never edit them in place: the server
    threads read them.  `asked` lists every question as (name, TYPE), in arrival order.
    `stop()` closes both sockets: from then on the proxy's questions are refused (ICMP port
    unreachable), as by a server that died."""

    def __init__(self) -> None:
        self.records: dict = {}
        self.rcodes: dict = {}
        self.silent: set = set()
        self.asked: list[tuple[str, str]] = []
        self.errors: list[str] = []              # what the server threads could not answer (a test bug)
        self.udp, self.tcp = _udp_and_tcp_on_one_port()
        self.port = self.udp.getsockname()[1]
        self.held: list[socket.socket] = []      # TCP connections of unanswered questions
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for thread in self.threads:
            thread.start()

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def asked_since(self, mark: int, name: str | None = None, rdtype: str | None = None) -> list:
        return [q for q in self.asked[mark:] if name in (None, q[0]) and rdtype in (None, q[1])]

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        for thread in self.threads:
            thread.join(5)
        for sock in (self.udp, self.tcp, *self.held):
            sock.close()

    # -- answers --------------------------------------------------------------------------------
    def _reply(self, wire: bytes, limit: int | None) -> bytes | None:
        """The answer's wire form, or None to leave the question unanswered.  `limit`: what a
        UDP answer may take (the query's EDNS payload, else 512); past it, an empty truncated
        answer sends the client to TCP.  None: TCP."""
        records, rcodes = self.records, self.rcodes
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        if rdtype in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        entries = records.get((name, rdtype))
        if (name, rdtype) in rcodes:
            response.set_rcode(dns.rcode.from_text(rcodes[(name, rdtype)]))
        elif entries is None:
            if not any(key[0] == name for key in records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            for ttl, text, *rdclass in entries:
                rdclass = dns.rdataclass.from_text(rdclass[0] if rdclass else "IN")
                rrset = response.find_rrset(response.answer, question.name, rdclass, question.rdtype, create=True)
                rrset.add(dns.rdata.from_text(rdclass, question.rdtype, text), ttl)
        try:
            return response.to_wire(max_size=limit or 65535)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _serve_udp(self) -> None:
        while not self.stopping.is_set():
            if not select.select([self.udp], [], [], 0.05)[0]:
                continue
            try:
                data, peer = self.udp.recvfrom(65535)
                query = dns.message.from_wire(data)
                limit = max(512, query.payload) if query.edns >= 0 else 512
                reply = self._reply(data, limit)
                if reply is not None:
                    self.udp.sendto(reply, peer)
            except Exception as exc:        # noqa: BLE001 - kept for the test to see, the server goes on
                self.errors.append(f"UDP: {exc!r}")

    def _serve_tcp(self) -> None:
        while not self.stopping.is_set():
            if not select.select([self.tcp], [], [], 0.05)[0]:
                continue
            conn, _ = self.tcp.accept()
            try:                              # one question per connection is all DnsQuery asks
                conn.settimeout(2)
                size = int.from_bytes(_recv_exactly(conn, 2), "big")
                reply = self._reply(_recv_exactly(conn, size), None)
                if reply is None:
                    self.held.append(conn)
                    continue
                conn.sendall(len(reply).to_bytes(2, "big") + reply)
            except Exception as exc:        # noqa: BLE001 - as above
                self.errors.append(f"TCP: {exc!r}")
            conn.close()


def _udp_and_tcp_on_one_port() -> tuple[socket.socket, socket.socket]:
    """A UDP socket on a port the OS picks and a listening TCP socket on the same number."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp
    raise AssertionError("no port free for both UDP and TCP")


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed in the middle of a question")
        data += chunk
    return data


@pytest.fixture
def hostile_dns():
    server = HostileDns()
    yield server
    server.stop()
    assert not server.errors, server.errors        # a question the test's server could not answer



# -- the proxy, seen from outside -------------------------------------------------------------------
def discovering(server: HostileDns, **discover) -> dict:
    """A `balancers:` section: balancer `app`, every member from DNS (`discover` keys)."""
    return {"app": {"discover": {"resolvers": [server.resolver], "interval": INTERVAL, "timeout": 0.5,
                                 **discover}}}


def master_alive(proxy) -> dict:
    """The master process runs and its control socket answers (`mpmctl status`): its status.
    Else AssertionError with the master's last words (its traceback)."""
    code = proxy.proc.poll()
    if code is not None or not psutil.pid_exists(proxy.proc.pid):
        raise AssertionError(f"the master exited with {code}; its stderr ends with:\n{proxy.stderr_text()[-1500:]}")
    status = proxy.status()
    if status is None:
        control_failed(proxy, "the master runs but its control socket does not answer")
    return status


def control_failed(proxy, why: str):
    """`mpmctl` got no answer: a master on its way out (it closes its control socket first)
    is reported with its traceback, else `why`."""
    try:
        proxy.proc.wait(3)
    except subprocess.TimeoutExpired:
        raise AssertionError(why) from None
    master_alive(proxy)


def until(proxy, predicate, timeout: float, what: str, explain=None):
    """wait_for, failing at once (with the traceback) when the master dies meanwhile;
    `explain()`: what to add to the message when the time runs out."""
    def check():
        if proxy.proc.poll() is not None:
            master_alive(proxy)
        return predicate()
    try:
        return wait_for(check, timeout, 0.05, what)
    except AssertionError as exc:
        if explain is None or proxy.proc.poll() is not None:
            raise
        raise AssertionError(f"{exc}: {explain()}") from None


def listing(proxy) -> dict:
    answer = proxy.mpmctl("balancer", "--json")
    if answer.returncode != 0:
        control_failed(proxy, f"mpmctl balancer: {answer.stderr}")
    return {b["name"]: b for b in json.loads(answer.stdout)["balancers"]}["app"]


def members(proxy) -> dict[str, dict]:
    return {m["url"]: m for m in listing(proxy)["members"]}


def served(proxy, n: int = 6) -> collections.Counter:
    """Who answered n requests, each on a new connection: the member's name, another status,
    or 'failed: ...' (the connection was reset, closed or timed out)."""
    counts: collections.Counter = collections.Counter()
    for _ in range(n):
        client = KeepAlive(proxy, timeout=3)
        try:
            status, _, body = client.get("/")
            counts[body.decode() if status == 200 else status] += 1
        except (OSError, ConnectionError) as exc:
            counts[f"failed: {exc!r}"] += 1
        finally:
            client.close()
    return counts


def srv(*targets: tuple[str, int]) -> list[tuple[int, str]]:
    """SRV records (TTL 0, priority 0, weight 10) for (target, port) pairs."""
    return [(0, f"0 10 {port} {target}.") for target, port in targets]


def text_of(name: str) -> str:
    """A name as dnspython (and so the proxy) writes it: escapes as \\DDD, no final dot."""
    return dns.name.from_text(name).to_text(omit_final_dot=True).lower()


# -- the tests ------------------------------------------------------------------------------------
def test_the_dns_server_dying_in_the_middle_of_an_srv_round_leaves_the_master_serving(
        proxy_factory, hostile_dns, member):
    """A user relies on the proxy outliving its DNS server: when the resolver goes away while a
    round waits for the SRV targets' addresses (all of them then refused in one select() batch),
    the master and its workers stay up, the members found last keep serving, and the failure
    is logged.  Before 15741fb a query closed earlier in the batch was read: AttributeError,
    the master exited and every worker with it."""
    good = member("good")
    targets = [f"t{i}.test" for i in range(5)]
    hostile_dns.records = {(SRV_NAME, "SRV"): srv(*((t, good.port) for t in targets)),
                           **{(t, "A"): [(0, "127.0.0.1")] for t in targets}}
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(hostile_dns, dns=SRV_NAME))
    until(proxy, lambda: len(members(proxy)) == 5 and served(proxy, 2) == {"good": 2}, 10, "the five targets")
    pid = proxy.proc.pid

    mark = len(hostile_dns.asked)
    hostile_dns.silent = {"A"}              # the SRV question answered, the targets' addresses held

    def round_waits_for_every_target():
        asked = hostile_dns.asked[mark:]
        first = next((i for i, q in enumerate(asked) if q[1] == "SRV"), None)
        return first is not None and {q[0] for q in asked[first:] if q[1] == "A"} == set(targets)
    until(proxy, round_waits_for_every_target, 5, "a round waiting for the five A answers")
    hostile_dns.stop()                      # gone before the retries (timeout 0.5 s): they are refused

    until(proxy, lambda: "keeping the last 5 members" in proxy.error_text(), 6,
          "the next round to fail and keep the set")
    status = master_alive(proxy)
    assert proxy.proc.pid == pid and [w["state"] for w in status["workers"]] == ["ready"]
    assert served(proxy, 6) == {"good": 6}
    discover = listing(proxy)["discover"]
    assert len(members(proxy)) == 5 and discover["failures"] >= 1 and discover["last_error"]


def test_a_record_of_another_class_is_ignored_and_the_rest_of_the_answer_applies(
        proxy_factory, hostile_dns, member):
    """A user relies on one odd record (class HS, next to the IN ones) not taking the proxy
    down: it is ignored as a stub resolver ignores it, the IN records apply (a new member
    joins) and the master stays up.  Before 15741fb it had no `.address`: AttributeError in
    the master's loop, the proxy gone."""
    m2 = member("m2", host="127.0.0.2")
    m3 = member("m3", host="127.0.0.3", port=m2.port)
    hostile_dns.records = {("app.test", "A"): [(0, "127.0.0.2")]}
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(hostile_dns, dns="app.test", type="A",
                                                                      port=m2.port))
    until(proxy, lambda: served(proxy, 2) == {"m2": 2}, 10, "the first member")

    mark = len(hostile_dns.asked)
    hostile_dns.records = {("app.test", "A"): [(0, "127.0.0.2"), (0, "127.0.0.3"), (0, r"\# 4 7f000004", "HS")]}
    until(proxy, lambda: set(members(proxy)) == {m2.url, m3.url}, 5, "the new member, from the same answer")
    until(proxy, lambda: set(served(proxy, 6)) == {"m2", "m3"}, 5, "both members to serve")
    # The odd answer went out round after round, and the master came back for more each time.
    until(proxy, lambda: len(hostile_dns.asked_since(mark, "app.test", "A")) >= 3, 5, "three rounds")
    master_alive(proxy)
    assert set(members(proxy)) == {m2.url, m3.url}             # nothing of 127.0.0.4 (the HS record)
    assert listing(proxy)["discover"]["failures"] == 0


def test_an_srv_target_too_long_for_the_member_table_is_left_out(proxy_factory, hostile_dns, member):
    """A user relies on one SRV record whose target is 486 characters as text (two labels of
    60 escaped bytes, a valid name on the wire) being left out with a warning: the master
    stays up, the good member keeps serving, and a new member from the same answer joins.
    Before 15741fb the master wrote the name into its 256-byte table column: ValueError, the
    proxy gone."""
    good, new = member("good"), member("new")
    label = "\\001" * 60
    long_target = text_of(f"{label}.{label}.test.")
    assert len(long_target) > 256
    hostile_dns.records = {(SRV_NAME, "SRV"): srv(("good.test", good.port)), ("good.test", "A"): [(0, "127.0.0.1")]}
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(hostile_dns, dns=SRV_NAME))
    until(proxy, lambda: served(proxy, 2) == {"good": 2}, 10, "the good member")

    hostile_dns.records = {
        (SRV_NAME, "SRV"): srv(("good.test", good.port), (long_target, good.port), ("new.test", new.port)),
        ("good.test", "A"): [(0, "127.0.0.1")], ("new.test", "A"): [(0, "127.0.0.1")],
        (long_target, "A"): [(0, "127.0.0.1")]}
    until(proxy, lambda: f"http://new.test:{new.port}" in members(proxy), 5, "the new member")
    until(proxy, lambda: "SRV target" in proxy.error_text(), 3, "a warning about the odd target")
    master_alive(proxy)
    assert set(members(proxy)) == {f"http://good.test:{good.port}", f"http://new.test:{new.port}"}
    assert set(served(proxy, 6)) == {"good", "new"}


def test_an_srv_target_with_escaped_bytes_or_an_escaped_dot_is_left_out_and_workers_keep_serving(
        proxy_factory, hostile_dns, member):
    """A user relies on SRV targets that are no plain host name (a label of 20 escaped bytes,
    81 characters as text; a dot inside a label) being left out with a warning: every request is
    still served, by the good member and a new one from the same answer, and no worker dies.
    Before 15741fb each worker encoded such a name as its Host line ('idna': label too long or
    empty) at its next pick and in every respawn: a crash loop, nothing served."""
    good, new = member("good"), member("new")
    odd = [text_of("x" + "\\001" * 20 + ".test."), text_of("a\\.b.test.")]
    hostile_dns.records = {(SRV_NAME, "SRV"): srv(("good.test", good.port)), ("good.test", "A"): [(0, "127.0.0.1")]}
    proxy = proxy_factory(ROUTES, workers=2, balancers=discovering(hostile_dns, dns=SRV_NAME))
    until(proxy, lambda: served(proxy, 2) == {"good": 2}, 10, "the good member")
    workers = sorted(proxy.worker_pids())

    hostile_dns.records = {
        (SRV_NAME, "SRV"): srv(("good.test", good.port), *((o, good.port) for o in odd), ("new.test", new.port)),
        ("good.test", "A"): [(0, "127.0.0.1")], ("new.test", "A"): [(0, "127.0.0.1")],
        **{(o, "A"): [(0, "127.0.0.1")] for o in odd}}
    until(proxy, lambda: f"http://new.test:{new.port}" in members(proxy), 5, "the new member")
    counts = served(proxy, 12)
    assert set(counts) == {"good", "new"}, (                   # both workers picked with the new rows
        f"{dict(counts)}; {proxy.error_text().count('UnicodeError')} UnicodeErrors and "
        f"{proxy.error_text().count('crash-looping')} crash-loop reports in the error log")
    until(proxy, lambda: proxy.error_text().count("SRV target") >= 2, 3, "a warning for each odd target")
    status = master_alive(proxy)
    assert sorted(w["pid"] for w in status["workers"]) == workers, "a worker died and was respawned"
    assert set(members(proxy)) == {f"http://good.test:{good.port}", f"http://new.test:{new.port}"}
    assert "idna" not in proxy.error_text()


def test_one_srv_target_whose_address_lookup_fails_does_not_freeze_the_others(proxy_factory, hostile_dns, member):
    """A user relies on one broken name (its A question answered SERVFAIL every time) not
    freezing the whole balancer: a target new in the SRV answer joins within a few rounds,
    and the failing one keeps its last address and keeps serving.  Before 15741fb the one
    failure failed every round: the new target never joined (nor would a departed one leave)."""
    a, b, c = member("a"), member("b"), member("c")
    addresses = {(f"{m.name}.test", "A"): [(0, "127.0.0.1")] for m in (a, b, c)}
    hostile_dns.records = {(SRV_NAME, "SRV"): srv(("a.test", a.port), ("b.test", b.port)), **addresses}
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(hostile_dns, dns=SRV_NAME))
    until(proxy, lambda: set(served(proxy, 4)) == {"a", "b"}, 10, "a.test and b.test")

    mark = len(hostile_dns.asked)
    hostile_dns.rcodes = {("b.test", "A"): "SERVFAIL"}     # first: every round that sees c.test fails b.test
    hostile_dns.records = {(SRV_NAME, "SRV"): srv(("a.test", a.port), ("b.test", b.port), ("c.test", c.port)),
                           **addresses}
    until(proxy, lambda: f"http://c.test:{c.port}" in members(proxy), 5, "c.test to join",
          lambda: f"members {sorted(members(proxy))}, last error {listing(proxy)['discover']['last_error']!r}")
    assert set(members(proxy)) == {f"http://{t}.test:{m.port}" for t, m in (("a", a), ("b", b), ("c", c))}
    until(proxy, lambda: set(served(proxy, 9)) == {"a", "b", "c"}, 5, "all three to serve")
    assert len(hostile_dns.asked_since(mark, "b.test", "A")) >= 2          # b.test was refused its address
    master_alive(proxy)


def test_a_reload_asks_dns_again_instead_of_waiting_out_a_long_ttl(proxy_factory, hostile_dns, member):
    """A user relies on `mpmctl reload` taking a changed DNS answer at once, as nginx resolves
    its names again on a reload: a record with TTL 3600 must not keep the old address for an
    hour whatever the operator does.  Before 15741fb a reload with the same discover settings
    kept the next lookup an hour away, and the old member kept serving."""
    old = member("old", host="127.0.0.2")
    new = member("new", host="127.0.0.3", port=old.port)
    hostile_dns.records = {("app.test", "A"): [(3600, "127.0.0.2")]}
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(hostile_dns, dns="app.test", type="A",
                                                                      port=old.port))
    until(proxy, lambda: served(proxy, 2) == {"old": 2}, 10, "the old member")

    hostile_dns.records = {("app.test", "A"): [(60, "127.0.0.3")]}         # the service moved
    mark = len(hostile_dns.asked)
    time.sleep(5 * INTERVAL)            # five intervals: the TTL, not `interval`, puts off the next question
    assert hostile_dns.asked_since(mark) == [] and served(proxy, 2) == {"old": 2}

    reloaded = proxy.reload()           # the same configuration
    assert reloaded.returncode == 0, reloaded.stderr
    proxy.wait_ready(generation=2)
    until(proxy, lambda: served(proxy, 2) == {"new": 2}, 4, "the new address after the reload",
          lambda: f"served {dict(served(proxy, 2))}, {len(hostile_dns.asked_since(mark))} DNS questions since "
                  f"the change, members {sorted(members(proxy))}")
    assert hostile_dns.asked_since(mark, "app.test", "A")

    def old_left():
        listed = members(proxy)
        return new.url in listed and listed.get(old.url, {"status": "gone"})["status"] != "enabled"
    until(proxy, old_left, 3, "the old member to leave")
    master_alive(proxy)
