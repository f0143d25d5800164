"""Issue #7: sticky sessions, drain, nofailover and hot-standby, through a real master.

Sticky requests come on fresh connections, so they meet both workers: what keeps them on
one member is the route in the request, not the connection."""

from __future__ import annotations

import json

import pytest
from balancer_util import KeepAlive, Member, members_section, ws_close, ws_echo, ws_open
from proxyproc import running_proxy
from rawsock import header_values
from support import wait_for


@pytest.fixture(scope="module")
def members():
    started = {name: Member(name) for name in ("a", "b", "c", "dead", "s1", "s2", "spare")}
    started["dead"].kill()
    yield started
    for member in started.values():
        member.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, members):
    m = members
    health = {"method": "TCP", "interval": 0.25, "timeout": 0.5}
    balancers = {
        "apache": members_section([m["a"], m["b"]], sticky="ROUTEID"),
        "insert": members_section([m["a"], m["b"], m["c"]], sticky={"cookie": "SRV", "insert": True}),
        "drain": members_section([m["a"], m["b"]], sticky="ROUTEID"),
        "strict": members_section([m["dead"], m["a"]], sticky="ROUTEID", nofailover=True),
        "lenient": members_section([m["dead"], m["a"]], sticky="ROUTEID"),
        "standby": members_section([m["s1"], m["s2"], m["spare"]], health=health),
    }
    balancers["standby"]["members"][2]["status"] = "hot-standby"
    routes = [{"path": f"/{name}/", "to": f"balancer://{name}/"} for name in balancers]
    with running_proxy(tmp_path_factory.mktemp("sticky"), routes, balancers=balancers) as proxy:
        yield proxy


def fresh_get(proxy, path: str, headers: str = "") -> tuple[int, dict, bytes]:
    client = KeepAlive(proxy)
    try:
        return client.get(path, headers)
    finally:
        client.close()


def member_of(proxy, path: str, headers: str = "") -> str:
    status, _, body = fresh_get(proxy, path, headers)
    assert status == 200, (status, body)
    return body.decode()


def test_apache_style_route_in_cookie_or_url_parameter(proxy):
    assert {member_of(proxy, "/apache/x", "Cookie: lang=en; ROUTEID=s3ss10n.b\r\n") for _ in range(10)} == {"b"}
    assert {member_of(proxy, "/apache/x?ROUTEID=.a") for _ in range(10)} == {"a"}
    assert {member_of(proxy, "/apache/x;ROUTEID=xyz.b") for _ in range(4)} == {"b"}
    # A route nobody has is no route: the method decides (both members serve).
    assert {member_of(proxy, "/apache/x", "Cookie: ROUTEID=zz.nobody\r\n") for _ in range(8)} == {"a", "b"}


def test_inserted_cookie_keeps_polling_and_websocket_on_one_member(proxy, members):
    """Socket.IO's shape: long-polling requests first, then the WebSocket upgrade, each on a
    new connection; the cookie the proxy set on the first response holds them together."""
    seen = {}
    for client in range(3):
        status, fields, body = fresh_get(proxy, "/insert/socket.io/?EIO=4&transport=polling")
        assert status == 200
        cookie = fields["set-cookie"][0]
        assert cookie == f"SRV={body.decode()}; Path=/; HttpOnly"
        jar = "Cookie: " + cookie.split(";")[0] + "\r\n"
        for _ in range(4):
            status, fields, again = fresh_get(proxy, f"/insert/socket.io/?EIO=4&transport=polling&c={client}", jar)
            assert (status, again) == (200, body) and "set-cookie" not in fields   # already stuck
        member = members[body.decode()]
        before = member.served("ws")
        sock, head, rest = ws_open(proxy, f"/insert/socket.io/?EIO=4&transport=websocket&c={client}", jar)
        try:
            assert not header_values(head, "Set-Cookie")
            assert ws_echo(sock, rest, b"2probe") == b"2probe"
            assert member.served("ws") == before + 1
        finally:
            ws_close(sock)
        seen[client] = body.decode()
    assert len(set(seen.values())) > 1      # different clients, different members (byrequests)


def test_websocket_without_cookie_gets_one(proxy):
    sock, head, rest = ws_open(proxy, "/insert/ws")
    try:
        [cookie] = header_values(head, "Set-Cookie")
        assert cookie.startswith("SRV=") and ws_echo(sock, rest, b"hi") == b"hi"
    finally:
        ws_close(sock)


def test_drain_takes_no_new_clients_but_keeps_sticky_ones(proxy):
    result = proxy.mpmctl("balancer", "set", "drain", "a", "drain")
    assert result.returncode == 0, result.stderr
    try:
        assert {member_of(proxy, "/drain/new") for _ in range(10)} == {"b"}
        assert {member_of(proxy, "/drain/old", "Cookie: ROUTEID=1.a\r\n") for _ in range(5)} == {"a"}
        listing = json.loads(proxy.mpmctl("balancer", "--json").stdout)
        [drain] = [b for b in listing["balancers"] if b["name"] == "drain"]
        assert [m["status"] for m in drain["members"]] == ["drain", "enabled"]
    finally:
        assert proxy.mpmctl("balancer", "set", "drain", "a", "enable").returncode == 0
    assert {member_of(proxy, "/drain/new") for _ in range(6)} == {"a", "b"}


def test_sticky_member_down_fails_over_unless_nofailover(proxy):
    assert member_of(proxy, "/lenient/x", "Cookie: ROUTEID=1.dead\r\n") == "a"
    status, _, _ = fresh_get(proxy, "/strict/x", "Cookie: ROUTEID=1.dead\r\n")
    assert status == 503
    assert member_of(proxy, "/strict/x") == "a"       # without a route, anyone usable


def test_hot_standby_takes_over_only_when_all_others_are_down(proxy, members):
    s1, s2, spare = members["s1"], members["s2"], members["spare"]
    assert {member_of(proxy, "/standby/") for _ in range(8)} == {"s1", "s2"}
    s1.kill()
    assert {member_of(proxy, "/standby/") for _ in range(8)} == {"s2"}     # one left: no standby yet
    s2.kill()
    assert {member_of(proxy, "/standby/") for _ in range(8)} == {"spare"}  # nothing failed, either
    s1.restart()
    wait_for(lambda: member_of(proxy, "/standby/") == "s1", 5, 0.1, "s1 back after its health check")
    assert {member_of(proxy, "/standby/") for _ in range(6)} == {"s1"}
    assert spare.served() >= 8
