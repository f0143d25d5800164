"""Review 2026-12-03-balancers: what a careless operator, a hostile client and a hostile DNS
server could do to the balancers (docs/reviews/2026-12-03-balancers/report.md).

The configuration check runs the loader in-process (it opens no socket); the rest runs a real
master and worker (proxyproc.Proxy) with real members on loopback."""

from __future__ import annotations

import time

import pytest
from balancer_util import KeepAlive, Member, members_section
from proxyproc import Proxy, raw_exchange, running_proxy
from rawbackend import RawBackend, RawConn
from support import wait_for
from test_dns_hostile import HostileDns, listing

from conf import ConfigError, load_config

CONFIG = """listen: ["127.0.0.1:8000"]
routes: [{{path: /, to: "balancer://app/"}}]
balancers:
  app:
    sticky: {{cookie: SRV, insert: true}}
    members:
      - {{url: "http://127.0.0.1:9", route: {route}}}
      - {{url: "http://127.0.0.1:10", route: b}}
"""


@pytest.mark.parametrize("route", ['"a\\r\\nX-Injected: yes"', '"a; Domain=evil.example"', '"a b"'])
def test_a_route_that_is_not_a_token_is_refused(tmp_path, route):
    """#1: the route goes into `Set-Cookie: SRV=<route>; Path=/; HttpOnly` as it is: a CR LF
    split the response head, a `;` added cookie attributes (the file loaded without a word)."""
    path = tmp_path / "mpm.yaml"
    path.write_text(CONFIG.format(route=route))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert any(e.startswith(f"{path}:7:") and "must be a token" in e for e in info.value.errors), info.value.errors


def test_routes_as_apache_and_tomcat_write_them_still_load(tmp_path):
    path = tmp_path / "mpm.yaml"
    path.write_text(CONFIG.format(route='"node-1.eu_west"'))
    config = load_config(str(path))
    assert [m.route for m in config.balancers["app"].members] == ["node-1.eu_west", "b"]


def _read_and_hang_up(conn: RawConn) -> None:
    conn.read_head()         # takes the request, answers nothing


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One master for the module: balancer `sticky` (members a, b, Apache's ROUTEID) on /s/,
    balancer `cut` (a member that hangs up on every request, then one that answers) on /f/."""
    a, b = Member("a"), Member("b")
    cut, ok = RawBackend(_read_and_hang_up), RawBackend()
    balancers = {"sticky": members_section([a, b], sticky="ROUTEID"),
                 "cut": {"members": [{"url": cut.url}, {"url": ok.url}]}}
    routes = [{"path": "/s/", "to": "balancer://sticky/"}, {"path": "/f/", "to": "balancer://cut/"}]
    with running_proxy(tmp_path_factory.mktemp("balancers"), routes, workers=1, balancers=balancers) as proxy:
        proxy.cut, proxy.ok = cut, ok
        yield proxy
    for member in (a, b, cut, ok):
        member.close()


def _timed_get(proxy, headers: str) -> tuple[float, int, bytes]:
    client = KeepAlive(proxy)
    try:
        started = time.monotonic()
        status, _, body = client.get("/s/x", headers)
        return time.monotonic() - started, status, body
    finally:
        client.close()


def test_a_sticky_cookie_of_dots_costs_its_length_not_its_square(proxy):
    """#2: each dot of `ROUTEID=...` was tried as the start of a route, a slice and a hash
    each: 96 fields of 8,170 dots (inside the header limits) held the worker 1,464 ms, and
    another client's request waited as long.  Now it costs about what the same bytes without
    dots cost (compared, so a loaded machine slows both).  The last field still names b."""
    last = "Cookie: ROUTEID=s3ss10n.b\r\n"
    plain, _, _ = _timed_get(proxy, "".join("Cookie: ROUTEID=" + "x" * 8170 + "\r\n" for _ in range(96)) + last)
    took, status, body = _timed_get(proxy, "".join("Cookie: ROUTEID=" + "." * 8170 + "\r\n" for _ in range(96)) + last)
    assert (status, body) == (200, b"b")
    # before: ~1,400 ms against ~20 ms without dots; after: about the same
    assert took < 0.25 + 4 * plain, f"{took * 1000:.0f} ms with dots, {plain * 1000:.0f} ms without"


def _upgrade(proxy, method: bytes) -> bytes:
    request = method + b" /f/x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    return raw_exchange(proxy, request, timeout=5, until_close=False).split(b"\r\n", 1)[0]


def test_a_post_asking_for_an_upgrade_is_never_sent_to_a_second_member(proxy):
    """#4: a member that read a POST (with `Upgrade`, no body) and hung up made the proxy send
    it to the next member: both received it, the client got that one's 200.  RFC 9112 §9.3.1:
    a proxy MUST NOT retry a non-idempotent request.  A WebSocket handshake (GET) still fails over."""
    cut, ok = proxy.cut, proxy.ok
    statuses = [_upgrade(proxy, b"POST") for _ in range(4)]
    assert len(cut.requests) + len(ok.requests) == 4, (len(cut.requests), len(ok.requests))   # once each
    assert statuses.count(b"HTTP/1.1 502 Bad Gateway") == len(cut.requests) >= 1, statuses
    cut.reset_records()
    ok.reset_records()
    assert [_upgrade(proxy, b"GET") for _ in range(4)] == [b"HTTP/1.1 200 OK"] * 4
    assert len(ok.requests) == 4 and len(cut.requests) >= 1


SRV = "_http._tcp.app.test"
TARGETS = [f"t{i:04}.app.test" for i in range(1500)]


def test_an_srv_answer_of_many_targets_asks_only_the_addresses_of_those_kept(tmp_path):
    """#3: every target's address was asked at once, one socket each, before `slots` cut the
    set: 1,500 targets held 1,500 sockets in the master (under LimitNOFILE=1024, its control
    socket could not accept).  Now the targets are asked in the order the cut keeps them, a few
    at a time, until the kept ones are known.  Here t0001 has no address: t0004 takes its place,
    and it does not count among the members DNS offers (raising slots would not bring it)."""
    server = HostileDns()
    answered = [TARGETS[0], *TARGETS[2:5]]
    server.records = {(SRV, "SRV"): [(5, f"0 1 8080 {t}.") for t in TARGETS],
                      **{(t, "A"): [(5, "127.0.0.1")] for t in answered}}     # the others: NXDOMAIN
    balancers = {"app": {"discover": {"dns": SRV, "type": "SRV", "slots": 4, "resolvers": [server.resolver],
                                      "interval": 30, "timeout": 1}}}
    proxy = Proxy(tmp_path, [{"path": "/", "to": "balancer://app/"}], workers=1, balancers=balancers)
    try:
        proxy.start()
        found = wait_for(lambda: len(listing(proxy)["members"]) == 4 and listing(proxy), 10, 0.05, "4 members")
        asked = {name for name, rdtype in server.asked if rdtype in ("A", "AAAA")}
    finally:
        proxy.stop()
        server.stop()
    # before: all 1,500; now the first ones, a few more than slots while t0001's AAAA is out
    assert set(TARGETS[:5]) <= asked <= set(TARGETS[:8]), f"{len(asked)} targets asked"
    assert sorted(m["url"] for m in found["members"]) == [f"http://{t}:8080" for t in answered]
    assert (found["discover"]["records"], found["discover"]["left_out"]) == (1499, 1495)


def test_a_round_of_unanswered_targets_still_ends(tmp_path):
    """#3, the other side: asked a few at a time, targets that never answer must not hold the
    round (and the set's refresh) for targets x timeout.  After what two questions may take,
    no new one is asked and the round ends: here within about 2 x 0.3 s x 2 attempts."""
    server = HostileDns()
    server.records = {(SRV, "SRV"): [(5, f"0 1 8080 {t}.") for t in TARGETS[:40]]}
    server.silent = {"A", "AAAA"}
    balancers = {"app": {"discover": {"dns": SRV, "type": "SRV", "slots": 4, "resolvers": [server.resolver],
                                      "interval": 30, "timeout": 0.3}}}
    proxy = Proxy(tmp_path, [{"path": "/", "to": "balancer://app/"}], workers=1, balancers=balancers)
    try:
        proxy.start()
        wait_for(lambda: "SRV targets not asked in time" in proxy.error_text(), 8, 0.05, "the round's end")
        asked = {name for name, rdtype in server.asked if rdtype == "A"}      # (each asked twice: 2 attempts)
    finally:
        proxy.stop()
        server.stop()
    assert 4 <= len(asked) <= 12, sorted(asked)     # waves of 4 (slots) while the time lasts
