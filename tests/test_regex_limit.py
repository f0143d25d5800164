"""A route's regular expression that backtracks on a crafted request costs that request a
500, not the worker: `^/(a+)+$` against "/aaa…a!" ran for minutes in Python's `re`, and
every connection on the worker waited for the watchdog (review 2026-12-04-conf #5).  nginx
answers 500 when PCRE's match limit ends such a search; so does mpm-proxy after
worker.regexlimit.LIMIT of CPU time, and logs which route it was."""

from __future__ import annotations

import time

import pytest
from rawsock import read_head, recv_until_eof, status_of
from support import wait_for

from conf import load_config
from conf.model import Limits
from worker.backend import Origins
from worker.http1 import parse_request
from worker.regexlimit import RegexTimeout
from worker.routing import Router

EVIL_PATH = b"/" + b"a" * 40 + b"!"            # (a+)+ tries 2**40 ways to split it


def _get(proxy, target: bytes, extra: bytes = b"") -> tuple[int | None, float]:
    started = time.monotonic()
    with proxy.connect(timeout=20) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n")
        head, _ = read_head(sock)
    return status_of(head), time.monotonic() - started


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["match", "when"])
def test_a_backtracking_route_regex_costs_one_request_a_500(proxy_factory, http_backend, where):
    backend = http_backend()
    if where == "match":
        evil = {"match": "^/(a+)+$", "to": backend.url + "/"}
        target, extra = EVIL_PATH, b""
    else:
        evil = {"path": "/", "when": {"header": {"X-Token": "^(a+)+$"}}, "to": backend.url + "/"}
        target, extra = b"/x", b"X-Token: " + EVIL_PATH[1:] + b"\r\n"
    proxy = proxy_factory([evil, {"path": "/", "to": backend.url + "/"}], workers=1)
    [worker] = proxy.worker_pids()
    assert _get(proxy, b"/ok")[0] == 200
    with proxy.connect(timeout=20) as idle:               # a connection the stall would hold up
        status, took = _get(proxy, target, extra)
        assert status == 500 and took < 2, f"the crafted request got {status} after {took:.1f} s"
        idle.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status_of(recv_until_eof(idle)) == 200
    assert proxy.worker_pids() == [worker], "the worker was replaced"
    wait_for(lambda: "ran past 10 ms of CPU on this request: 500" in proxy.error_text(), 5, 0.05,
             "the error log to name the route")
    assert f"route {evil.get('match', '/')} (line " in proxy.error_text()


def test_quick_regexes_route_as_before_under_the_limit(tmp_path):
    """Sans-IO: the limit is CPU time, so a thousand quick searches never trip it, and the
    crafted path raises RegexTimeout naming its route."""
    path = tmp_path / "r.yaml"
    path.write_text('listen: ["127.0.0.1:8000"]\nroutes:\n'
                    '  - {match: "^/u/([a-z]+)$", to: "http://127.0.0.1:9001/users/$1"}\n'
                    '  - {match: "^/(a+)+$", to: "http://127.0.0.1:9001/"}\n')
    router = Router(load_config(str(path)).routes, 300.0, Origins())
    head = parse_request(b"GET /u/ann HTTP/1.1\r\nHost: h\r\n\r\n", Limits())
    for _ in range(1000):
        assert router.resolve(head.target, head)[1] == b"/users/ann"
    head = parse_request(b"GET " + EVIL_PATH + b" HTTP/1.1\r\nHost: h\r\n\r\n", Limits())
    started = time.process_time()
    with pytest.raises(RegexTimeout) as raised:
        router.resolve(head.target, head)
    assert time.process_time() - started < 0.5
    assert raised.value.route.line == 4      # (its line in the file)


@pytest.mark.parametrize("routes, timed", [
    ('  - {path: /, when: {header: {Upgrade: websocket}}, to: "ws://127.0.0.1:9001/"}\n'
     '  - {match: "^/(myApp/ws)$", to: "ws://127.0.0.1:9001/$1"}\n', False),
    ('  - {match: "^/(a.*)$", to: "http://127.0.0.1:9001/$1"}\n', True),
    ('  - {path: /, when: {header: {Host: "a|b"}}, to: "http://127.0.0.1:9001/"}\n', True),
])
def test_only_patterns_that_can_backtrack_pay_for_the_timer(tmp_path, routes, timed):
    """A pattern without a repeat or an alternative matches only strings of its own length:
    its search is linear, and the timer's two system calls per request are spared."""
    path = tmp_path / "r.yaml"
    path.write_text('listen: ["127.0.0.1:8000"]\nroutes:\n' + routes)
    assert Router(load_config(str(path)).routes, 300.0, Origins()).timed is timed
