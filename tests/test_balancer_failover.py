"""Issue #7: a member dies and comes back; failonstatus; bybusyness and WebSockets;
`mpmctl balancer` (balancer-manager) changes, and a reload undoing them."""

from __future__ import annotations

import json
import threading

import pytest
from balancer_util import KeepAlive, Member, members_section, ws_close, ws_echo, ws_open
from proxyproc import wait_log
from support import wait_for

HEALTH = {"method": "GET", "path": "/health", "expect": "^200$", "interval": 0.25, "passes": 2, "fails": 1,
          "timeout": 0.5}


@pytest.fixture
def three(request):
    members = [Member(name) for name in ("a", "b", "c")]
    yield members
    for member in members:
        member.close()


def member_states(proxy, balancer: str) -> dict:
    listing = json.loads(proxy.mpmctl("balancer", "--json").stdout)
    [found] = [b for b in listing["balancers"] if b["name"] == balancer]
    return {m["route"]: m for m in found["members"]}


def test_killed_member_fails_nothing_and_returns_when_its_check_passes(proxy_factory, three):
    a, b, c = three
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}],
                          balancers={"app": members_section(three, method="byrequests", health=HEALTH)})
    clients = [KeepAlive(proxy) for _ in range(4)]
    failures, served = [], []
    stop = threading.Event()

    def load():        # idempotent requests all along, from four connections
        i = 0
        while not stop.is_set():
            try:
                status, fields, _ = clients[i % 4].get("/page", method="GET" if i % 3 else "HEAD")
            except OSError as exc:
                failures.append(repr(exc))
                clients[i % 4].close()
            else:
                (served if status == 200 else failures).append(fields.get("x-member", [status])[0])
            i += 1
    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_for(lambda: len(served) > 30, 5, what="traffic before the kill")
        b.kill()
        wait_for(lambda: member_states(proxy, "app")["b"]["health"] == "down", 5, 0.05, "b marked down")
        after_detection = len(served)
        wait_for(lambda: len(served) > after_detection + 60, 5, what="traffic after the kill")
        assert failures == []
        assert "b" not in served[after_detection:]
        # New WebSockets go elsewhere, and work.
        sockets = [ws_open(proxy, f"/ws/{i}") for i in range(4)]
        assert [ws_echo(sock, rest, b"m%d" % i) for i, (sock, _, rest) in enumerate(sockets)] == \
            [b"m0", b"m1", b"m2", b"m3"]
        assert b.served("ws") == 0 and a.served("ws") + c.served("ws") == 4
        for sock, _, _ in sockets:
            ws_close(sock)
        # Back: two passing checks (passes: 2) and it takes requests again.
        b.restart()
        wait_for(lambda: member_states(proxy, "app")["b"]["health"] == "up", 5, 0.05, "b up again")
        back = len(served)
        wait_for(lambda: "b" in served[back:], 5, what="b serving again")
        assert failures == []
    finally:
        stop.set()
        thread.join(10)
        for client in clients:
            client.close()
    log = wait_log(proxy, "is up again")
    assert f"member {b.url} is down: health check GET failed" in log
    assert f"member {b.url} is up again" in log


def test_connect_failure_fails_over_even_a_post_and_puts_the_member_in_error(proxy_factory, three):
    a, b, c = three
    b.kill()
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}],
                          balancers={"app": members_section(three, retry=30)})
    client = KeepAlive(proxy)
    try:
        bodies = [client.get("/form", "Content-Length: 0\r\n", method="POST")[2] for _ in range(9)]
    finally:
        client.close()
    assert b"b" not in bodies and len(bodies) == 9     # nothing of a POST reached b: safe to resend
    states = member_states(proxy, "app")
    assert states["b"]["state"] == "error" and 0 < states["b"]["error_for"] <= 30
    assert states["b"]["failures"] >= 1
    assert "in error state for 30s: connect failed" in wait_log(proxy, "in error state")


def test_failonstatus_puts_the_member_in_error_and_relays_the_answer(proxy_factory, three):
    a, b, c = three
    b.status = 503
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1,
                          balancers={"app": members_section(three, failonstatus=[503], retry=30)})
    client = KeepAlive(proxy)
    try:
        answers = [client.get("/x")[0:3:2] for _ in range(9)]
    finally:
        client.close()
    assert answers.count((503, b"b")) == 1             # relayed as it came (Apache's behaviour)...
    assert answers.count((200, b"a")) + answers.count((200, b"c")) == 8   # ...and b is out
    assert member_states(proxy, "app")["b"]["state"] == "error"


def test_bybusyness_sends_new_websockets_to_the_member_with_fewest_tunnels(proxy_factory, three):
    a, b, _ = three
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}],
                          balancers={"app": members_section([a, b], method="bybusyness")})
    opened = [ws_open(proxy, f"/ws/{i}") for i in range(4)]
    try:
        # The backends count tunnels in their own threads: give them a moment under load.
        wait_for(lambda: (a.tunnels, b.tunnels) == (2, 2), 5, 0.02, "2 tunnels on each backend")
        wait_for(lambda: [m["busy"] for m in member_states(proxy, "app").values()] == [2, 2], 5, 0.05, "2 + 2")
        on_a = [sock for i, (sock, _, _) in enumerate(opened) if any(r["target"] == f"/ws/{i}" for r in a.requests)]
        assert len(on_a) == 2
        for sock in on_a:
            ws_close(sock)
        wait_for(lambda: member_states(proxy, "app")["a"]["busy"] == 0, 5, 0.05, "a's tunnels closed")
        more = [ws_open(proxy, f"/ws/more{i}") for i in range(2)]    # over both workers: shared counts
        opened += more
        wait_for(lambda: (a.tunnels, b.tunnels) == (2, 2), 5, 0.02, "the new tunnels on a")
        assert sum(1 for r in a.requests if r["target"].startswith("/ws/more")) == 2
        # A reload hands the tunnels to the new generation, whose table counts them too.
        assert proxy.reload().returncode == 0
        wait_for(lambda: [m["busy"] for m in member_states(proxy, "app").values()] == [2, 2], 10, 0.1,
                 "handed-over tunnels counted in the new generation's table")
        live = [entry for entry in opened if entry[0] not in on_a]
        assert [ws_echo(sock, rest, b"still") for sock, _, rest in live] == [b"still"] * 4
    finally:
        for sock, _, _ in opened:
            ws_close(sock)


def test_balancer_manager_weight_disable_errors_and_reload(proxy_factory, three):
    a, b, c = three
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1,
                          balancers={"app": members_section(three)})
    client = KeepAlive(proxy)

    def order(n):
        return "".join(client.get("/")[2].decode() for _ in range(n))
    try:
        assert proxy.mpmctl("balancer", "set", "app", "c", "disable").returncode == 0
        assert proxy.mpmctl("balancer", "set", "app", a.url, "weight", "3").returncode == 0
        assert order(8) == "aaba" * 2
        for args, message in ((("set", "nope", "a", "drain"), "no balancer 'nope'"),
                              (("set", "app", "zz", "drain"), "has no member 'zz'"),
                              (("set", "app", "a", "weight", "0"), "weight takes an integer"),
                              (("set", "app", "a", "explode"), "unknown action")):
            result = proxy.mpmctl("balancer", *args)
            assert result.returncode == 1 and message in result.stderr
        states = member_states(proxy, "app")
        assert (states["a"]["weight"], states["c"]["status"]) == (3, "disabled")
        assert proxy.reload().returncode == 0          # the file again: c enabled, weights 1
        proxy.wait_ready(generation=2)
        client.close()
        states = member_states(proxy, "app")
        assert [(m["status"], m["weight"]) for m in states.values()] == [("enabled", 1)] * 3
        assert sorted(order(6)) == sorted("aabbcc")
    finally:
        client.close()
