"""A route's regular expression that backtracks on a crafted request costs that request a
500, not the worker: `^/(a+)+$` against "/aaa…a!" ran for minutes in Python's `re`, and
every connection on the worker waited for the watchdog (review 2026-12-04-conf #5).  nginx
answers 500 when PCRE's match limit ends such a search; so does mpm-proxy after
worker.regexlimit.LIMIT of CPU time, and logs which route it was.  The limit holds for a
single-character repeat on a long subject too (review 2026-12-04-session-diff R1), and is
per search, so many ordinary conditions do not add up to it (R2)."""

from __future__ import annotations

import time

import pytest
import regex
from rawsock import read_head, recv_until_eof, status_of
from support import wait_for

from conf import load_config
from conf.model import Limits
from worker.backend import Origins
from worker.http1 import parse_request
from worker.regexlimit import RegexTimeout, bounded_search
from worker.routing import Router

EVIL_PATH = b"/" + b"a" * 40 + b"!"     # (a|aa)+ tries a Fibonacci number of ways to split it


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
        evil = {"match": "^/(a|aa)+$", "to": backend.url + "/"}
        target, extra = EVIL_PATH, b""
    else:
        evil = {"path": "/", "when": {"header": {"X-Token": "^(a|aa)+$"}}, "to": backend.url + "/"}
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


@pytest.mark.timeout(60)
def test_a_repeat_over_a_header_sent_97_times_does_not_hold_the_worker(proxy_factory, http_backend):
    """`[^;]*=` searched in 97 joined lines of 8,000 bytes (780 KB): with `re` and a timer
    around it, 4.2 s per request, every other connection of the worker waiting."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "when": {"header": {"X-Id": "[^;]*="}}, "to": backend.url + "/when/"},
                           {"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"header_fields": 100, "header_field": 8190})
    lines = b"".join(b"X-Id: " + b"a" * 8000 + b"\r\n" for _ in range(97))
    with proxy.connect(timeout=20) as other:
        status, took = _get(proxy, b"/x", lines)
        # (Answered at once: routed, the test backend refuses a 780 KB head with its 502.)
        assert status is not None and took < 1, f"the crafted request got {status} after {took:.1f} s"
        other.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status_of(recv_until_eof(other)) == 200


@pytest.mark.timeout(60)
def test_many_ordinary_conditions_do_not_share_one_limit(proxy_factory, http_backend):
    """120 routes with a Cookie condition and an ordinary 8 KB Cookie: ~100 µs a search, so
    one limit for the whole routing gave legitimate requests 500s (6-9 of 20)."""
    backend = http_backend()
    routes = [{"path": f"/svc{n}/", "when": {"header": {"Cookie": r"(?:^|;\s*)beta=1"}}, "to": backend.url + "/"}
              for n in range(120)] + [{"path": "/", "to": backend.url + "/"}]
    proxy = proxy_factory(routes, workers=1)
    cookie = b"Cookie: " + b"; ".join(b"c%d=%s" % (n, b"v" * 90) for n in range(80)) + b"\r\n"
    statuses = [_get(proxy, target, cookie)[0] for target in (b"/svc1/x", b"/svc119/x", b"/other") * 7]
    assert statuses == [200] * 21, statuses


def test_quick_regexes_route_as_before_under_the_limit(tmp_path):
    """Sans-IO: the limit is CPU time, so a thousand quick searches never trip it, and the
    crafted path raises RegexTimeout naming its route."""
    path = tmp_path / "r.yaml"
    path.write_text('listen: ["127.0.0.1:8000"]\nroutes:\n'
                    '  - {match: "^/u/([a-z]+)$", to: "http://127.0.0.1:9001/users/$1"}\n'
                    '  - {match: "^/(a|aa)+$", to: "http://127.0.0.1:9001/"}\n')
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


@pytest.mark.parametrize("pattern, limited", [
    (b"websocket", False), (b"^/(myApp/ws)$", False), (b"^/app((?:/.*)?)$", False), (b"a|b", False),
    (b"^/(a+)+$", True), (b"^/(a|aa)+$", True), (b"[^;]*=", True), (b"^/x{2}", True), (b"(a)\\1", True)])
def test_only_patterns_whose_search_can_cost_more_than_linear_time_pay_for_the_limit(pattern, limited):
    """No repeat of more than one, or anchored with one repeat and no alternative in it: the
    search is linear in the subject, and stays without a timeout (0.46 against 3.0 µs; 6,000
    such routes cost 31 ms a request with one: review 2026-12-04-fixes #3).  What import-apache
    writes for `ProxyPass /app` is one of them."""
    compiled = regex.compile(pattern, regex.IGNORECASE)
    assert (bounded_search(compiled) != compiled.search) is limited
