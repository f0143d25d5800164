"""A balancer member found in DNS that leaves DNS, with a real DNS server on loopback (commit 4b18738).

What a user relies on (README, "What DNS gives fills up to `slots` rows"): a member that
leaves DNS drains for `hold` seconds.  It keeps its row, its sticky sessions stay on it, and
it takes new requests only when no member still in DNS can.  That covers the newcomers of
a blue/green switch before their first passing health check: the old set answers meanwhile,
not 503.

dnsmasq (balancer_util.DnsServer, the `dns_server` fixture) answers from A records the tests
write. The members are real servers (balancer_util.Member) on 127.0.0.2-5, all on one port,
as an A record set would point at. The helpers come from test_balancer_dns.py.
"""

from __future__ import annotations

import collections
import threading
import time

from balancer_util import KeepAlive
from support import wait_for
from test_balancer_dns import INTERVAL, ROUTES, a_records, discovering, members


def fresh_get(proxy, headers: str = "") -> tuple[int, dict, bytes]:
    """One request on a new connection: each may meet either worker."""
    client = KeepAlive(proxy, timeout=5)
    try:
        return client.get("/", headers)
    finally:
        client.close()


def test_a_blue_green_switch_with_health_checks_answers_from_blue_until_green_is_up(proxy_factory, dns_server,
                                                                                      fleet):
    """During a blue/green switch in DNS, clients get no 503 while the green members wait for
    their health checks. DNS stops naming the blue members and names the green ones. The
    green members start down, and need two passing checks 2 s apart. Until they pass, the blue
    members, which still work, answer every request. Once the green members are up, new
    requests go to them only."""
    blue, green = fleet[:2], fleet[2:4]
    names = {m.name: ("blue" if m in blue else "green") for m in blue + green}
    a_records(dns_server, blue)
    health = {"method": "GET", "path": "/hc", "interval": 2.0, "passes": 2, "timeout": 1.0}
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=blue[0].port,
                                                        hold=30, extra={"health": health}))

    def health_of(listed: dict) -> dict[str, str]:
        return {m.name: listed[m.url]["health"] for m in blue + green if m.url in listed}

    wait_for(lambda: health_of(members(proxy)) == {"m2": "up", "m3": "up"}, 10, 0.1, "the blue members up")

    def green_listed() -> dict | None:
        listed = members(proxy)
        return listed if all(m.url in listed for m in green) else None

    answers: list[tuple[float, int | str, str]] = []       # (sent at, status or error, who answered)
    stop = threading.Event()

    def client_loop() -> None:
        client = KeepAlive(proxy, timeout=5)
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status, _, body = client.get("/")
                answers.append((sent, status, body.decode()))
            except (OSError, ConnectionError) as exc:
                answers.append((sent, type(exc).__name__, ""))
                client.close()
        client.close()

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        switched = time.monotonic()
        a_records(dns_server, green)
        # The master's next lookup (every 1 s) places green, down until checked, and drains blue.
        listed = wait_for(green_listed, INTERVAL + 3, 0.05, "the green members placed")
        placed = time.monotonic()
        assert health_of(listed)["m4"] == "down" and health_of(listed)["m5"] == "down", listed
        wait_for(lambda: {health_of(members(proxy)).get(m.name) for m in green} == {"up"}, 10, 0.1,
                 "the green members up")
        green_up = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads)

    statuses = collections.Counter(status for _, status, _ in answers)
    assert statuses == {200: len(answers)}, f"answers around the switch: {dict(statuses)}"
    assert {who for _, _, who in answers} <= set(names)
    assert {listed[m.url]["status"] for m in blue} == {"drain"}, listed     # they kept their rows
    before = {names[who] for sent, _, who in answers if sent < switched}
    meanwhile = collections.Counter(names[who] for sent, _, who in answers if placed < sent < green_up - 0.5)
    after = collections.Counter(names[who] for sent, _, who in answers if sent > green_up)
    assert before == {"blue"}
    assert meanwhile["blue"] > 0, meanwhile          # green was still down: blue answered
    assert after["green"] > 0 and after["blue"] == 0, after
    assert len(green[0].requests) >= 2 and green[0].requests[0]["target"] == "/hc"


def test_a_sticky_session_stays_on_a_member_that_left_dns_within_hold(proxy_factory, dns_server, fleet):
    """A sticky session (cookie, insert) stays on its member for `hold` after that member
    left DNS, while the member still works. The user's session state lives on that member. A
    client without the cookie goes to a member that DNS still names."""
    leaving, staying = fleet[:2]
    a_records(dns_server, [leaving, staying])
    proxy = proxy_factory(ROUTES, balancers=discovering(dns_server, dns="app.test", type="A", port=leaving.port,
                                                        hold=30, extra={"sticky": {"cookie": "ROUTEID",
                                                                                   "insert": True}}))
    wait_for(lambda: {m.url for m in (leaving, staying)} <= set(members(proxy)), 5, 0.1, "both members")

    def session_on_leaving() -> str | None:
        status, fields, body = fresh_get(proxy)
        if status == 200 and body == leaving.name.encode():
            return fields["set-cookie"][0].split(";")[0]
        return None

    cookie = wait_for(session_on_leaving, 5, 0.02, f"a session on {leaving.name}")

    def session_answers(n: int) -> list[str]:
        answers = []
        for _ in range(n):
            status, _, body = fresh_get(proxy, f"Cookie: {cookie}\r\n")
            answers.append(body.decode() if status == 200 else str(status))
        return answers

    assert session_answers(3) == [leaving.name] * 3
    a_records(dns_server, [staying])
    wait_for(lambda: "left DNS: draining" in proxy.error_text(), INTERVAL + 3, 0.05, f"{leaving.name} to leave")
    left = time.monotonic()
    while time.monotonic() - left < 3.0:             # several master ticks (0.25 s) and lookups (1 s)
        answers = session_answers(2)
        assert answers == [leaving.name] * 2, \
            f"{time.monotonic() - left:.2f}s after {leaving.name} left DNS (hold 30 s), the session went to {answers}"
        status, _, body = fresh_get(proxy)
        assert (status, body) == (200, staying.name.encode()), (status, body)
        time.sleep(0.2)
    assert members(proxy)[leaving.url]["status"] == "drain"     # its row kept for hold
