"""Operating edges a review of the balancers and the admin and control ports found (each test
failed before 6bff76c).

- a WebSocket tunnel handed to another worker, when a worker recycles
  (`mpm.max_connections_per_child`) or on a reload, is counted busy on its member once, not
  also in the worker that sent it: `mpmctl balancer` and the /metrics gauge
  `mpm_balancer_member_busy` show the open tunnels and exchanges, drop to 0 when they close,
  and a sticky request for a member under its `max_connections` still goes to that member;
- idle connections from addresses `admin.allow` does not list (64 of them) do not take the
  admin listener's slots: an allowed client's /healthz is still answered 200, and the others
  still get 403 when they do send a request;
- a control-socket request nested 60,000 deep (`[[[[...`) gets a "bad request" answer, and
  the master keeps running and serving.

The backends (test_reload_edges' `_app`) hold an answer while the test keeps an event unset
(`X-Wait: NAME`): a slow exchange keeps the worker that hands its tunnels over alive for as
long as a step needs."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from admin_util import admin_port, admin_section, get, scrape, value
from balancer_util import ws_close, ws_echo, ws_open
from rawbackend import RawBackend
from rawsock import read_head, recv_until_close, recv_until_eof, status_of
from support import wait_for
from test_balancer_failover import member_states
from test_reload_edges import _app


@pytest.fixture
def pair():
    """Members a and b: `_app` backends (a target's arrival sets event "got TARGET")."""
    servers = [RawBackend(_app, timeout=30) for _ in range(2)]
    yield servers
    for server in servers:
        for event in list(server.events.values()):     # no handler left waiting
            event.set()
        server.close()


def _sticky_balancer(a: RawBackend, b: RawBackend, **member_a) -> dict:
    return {"app": {"method": "bybusyness", "sticky": "ROUTEID", "members": [
        {"url": a.url, "route": "a", **member_a}, {"url": b.url, "route": "b"}]}}


def _busy(proxy) -> dict[str, int]:
    """`mpmctl balancer`: busy per route."""
    return {route: state["busy"] for route, state in member_states(proxy, "app").items()}


def _gauge(proxy, url: str) -> float:
    """/metrics: mpm_balancer_member_busy of the member at `url`, over every generation."""
    return value(scrape(proxy), "mpm_balancer_member_busy", balancer="app", member=url)


def _settles(read, expected, what: str, timeout: float = 3.0):
    """`read()` once it equals `expected`; else an assertion naming the last value seen."""
    seen = []

    def check():
        seen.append(read())
        return seen[-1] == expected
    try:
        wait_for(check, timeout, 0.1, what)
    except AssertionError:
        raise AssertionError(f"{what}: expected {expected}, still {seen[-1]} after {timeout}s") from None


def _start_slow(proxy, b: RawBackend) -> socket.socket:
    """An exchange on member b whose answer waits for event "slow"."""
    slow = proxy.connect(10)
    slow.sendall(b"GET /slow?ROUTEID=x.b HTTP/1.1\r\nHost: t\r\nX-Wait: slow\r\n\r\n")
    assert b.event("got /slow?ROUTEID=x.b").wait(5), "member b never received the slow request"
    return slow


def _finish_slow(slow: socket.socket, b: RawBackend) -> None:
    b.event("slow").set()
    head, _ = read_head(slow)
    assert status_of(head) == 200, head


def _tunnels_by_worker(proxy) -> dict[int, int]:
    return {w["pid"]: w["tunnels"] for w in proxy.status()["workers"]}


# == 1. a tunnel handed over stays counted in the worker that sent it =========================

@pytest.mark.timeout(40)
def test_tunnels_handed_over_by_a_recycled_worker_are_counted_busy_once(proxy_factory, pair):
    a, b = pair
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1,
                          mpm={"max_connections_per_child": 3},
                          balancers=_sticky_balancer(a, b, max_connections=2))
    first = proxy.worker_pids()[0]
    slow = _start_slow(proxy, b)                     # connection 1: keeps the recycled worker alive
    tunnels = [ws_open(proxy, "/ws?ROUTEID=x.a") for _ in range(2)]    # connection 3 recycles it
    try:
        wait_for(lambda: (t := _tunnels_by_worker(proxy)).get(first) == 0 and sum(t.values()) == 2,
                 10, 0.1, "both tunnels handed to the successor of the recycled worker")
        assert [ws_echo(sock, rest, b"moved") for sock, _, rest in tunnels] == [b"moved"] * 2
        _settles(lambda: _busy(proxy), {"a": 2, "b": 1},
                 "mpmctl balancer busy with 2 tunnels on a and the slow exchange on b")
        ws_close(tunnels[0][0])
        _settles(lambda: _busy(proxy)["a"], 1, "busy on a with 1 tunnel left open")
        with proxy.connect() as sock:                # a is under its max_connections (2): sticky holds
            sock.sendall(b"GET /page?ROUTEID=x.a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert status_of(recv_until_eof(sock)) == 200
        assert [r.target for r in a.requests if r.target == "/page?ROUTEID=x.a"] == ["/page?ROUTEID=x.a"], \
            "the sticky request for member a (1 tunnel open, max_connections 2) went elsewhere; member b got " \
            f"{[r.target for r in b.requests]}"
        ws_close(tunnels[1][0])
        _settles(lambda: _busy(proxy)["a"], 0, "busy on a once every tunnel closed (the recycled worker still lives)")
        assert first in proxy.worker_pids(current_only=False), "the recycled worker left too early for this check"
        _finish_slow(slow, b)
        _settles(lambda: _busy(proxy), {"a": 0, "b": 0}, "busy once everything closed")
    finally:
        for sock, _, _ in tunnels:
            ws_close(sock)
        slow.close()


@pytest.mark.timeout(40)
def test_tunnels_handed_over_on_reload_are_counted_busy_once_in_metrics(proxy_factory, pair):
    a, b = pair
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1, admin=admin_section(),
                          balancers=_sticky_balancer(a, b))
    first = proxy.worker_pids()[0]
    slow = _start_slow(proxy, b)                     # keeps generation 1's worker alive
    tunnels = [ws_open(proxy, "/ws?ROUTEID=x.a") for _ in range(2)]
    try:
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation=2)
        wait_for(lambda: (t := _tunnels_by_worker(proxy)).get(first) == 0 and sum(t.values()) == 2,
                 10, 0.1, "both tunnels handed to generation 2")
        assert [ws_echo(sock, rest, b"moved") for sock, _, rest in tunnels] == [b"moved"] * 2
        _settles(lambda: _gauge(proxy, a.url), 2, "mpm_balancer_member_busy of a with 2 tunnels open")
        assert _gauge(proxy, b.url) == 1, "the slow exchange on b"
        for sock, _, _ in tunnels:
            ws_close(sock)
        _settles(lambda: _gauge(proxy, a.url), 0,
                 "mpm_balancer_member_busy of a once its tunnels closed (generation 1 still lives)")
        assert first in proxy.worker_pids(current_only=False), "generation 1 left too early for this check"
        _finish_slow(slow, b)
        _settles(lambda: (_gauge(proxy, a.url), _gauge(proxy, b.url)), (0, 0), "busy once everything closed")
    finally:
        for sock, _, _ in tunnels:
            ws_close(sock)
        slow.close()


# == 2. the admin listener's slots =============================================================

def _healthz_from(source: str, port: int):
    """The status of GET /healthz from `source` (a loopback address), or the error it met."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: admin.test\r\n\r\n")
            answer = recv_until_eof(sock, limit=5)
    except OSError as exc:
        return repr(exc)
    return status_of(answer) or f"closed with no answer ({answer[:40]!r})"


@pytest.mark.timeout(30)
def test_idle_connections_from_outside_allow_leave_healthz_to_allowed_clients(proxy_factory, pair):
    a, _ = pair
    proxy = proxy_factory([{"path": "/", "to": a.url + "/"}], admin=admin_section(allow=["127.0.0.2/32"]))
    port = admin_port(proxy)
    assert _healthz_from("127.0.0.2", port) == 200
    assert _healthz_from("127.0.0.1", port) == 403
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]   # not allowed
    try:
        # Accepted in the order they came: the probes below are accepted after all 64.
        answers = [_healthz_from("127.0.0.2", port) for _ in range(3)]
        assert answers == [200] * 3, \
            f"the allowed client's /healthz while 64 idle connections from outside admin.allow are open: {answers}"
        for sock in idle:                        # those the listener kept answer a request with 403
            try:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin.test\r\n\r\n")
            except OSError:
                pass
        statuses = [status_of(recv_until_close(sock, 3)[0]) for sock in idle]
        answered = [s for s in statuses if s is not None]
        assert answered and set(answered) == {403}, f"answers to the clients outside admin.allow: {answered}"
    finally:
        for sock in idle:
            sock.close()
    assert get(port, "/healthz")[0] == 403
    assert _healthz_from("127.0.0.2", port) == 200


# == 3. the control socket =====================================================================

@pytest.mark.timeout(30)
def test_deeply_nested_control_request_is_refused_and_the_master_lives(proxy_factory, pair):
    a, _ = pair
    proxy = proxy_factory([{"path": "/", "to": a.url + "/"}])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(os.path.join(proxy.dir, "run", "mpm.sock"))
        sock.sendall(b"[" * 60000 + b"\n")
        answer, _ = recv_until_close(sock, 5)
    if not answer.endswith(b"\n"):
        try:
            proxy.proc.wait(3)
        except subprocess.TimeoutExpired:
            pass
        pytest.fail(f"no answer line to a malformed request ({answer[:200]!r}); master exit code "
                    f"{proxy.proc.poll()}; its stderr ends: {proxy.stderr_text()[-300:]}")
    answer = json.loads(answer)
    assert answer["ok"] is False and answer["errors"][0].startswith("bad request: "), answer
    assert proxy.proc.poll() is None, f"the master exited: {proxy.stderr_text()[-300:]}"
    assert proxy.status()["generation"] == 1, "the control socket answers mpmctl afterwards"
    with proxy.connect() as sock:
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert recv_until_eof(sock).endswith(b"/after"), "the data port serves afterwards"
