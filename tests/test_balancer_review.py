"""Review 2026-12-03-balancers: what a careless operator, a hostile client and a hostile DNS
server could do to the balancers (docs/reviews/2026-12-03-balancers/report.md).

The configuration check runs the loader in-process (it opens no socket); the rest runs a real
master and worker (proxyproc.Proxy) with real members on loopback."""

from __future__ import annotations

import time

import pytest
from balancer_util import KeepAlive, Member, members_section
from proxyproc import running_proxy

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


@pytest.fixture(scope="module")
def sticky_proxy(tmp_path_factory):
    a, b = Member("a"), Member("b")
    balancers = {"app": members_section([a, b], sticky="ROUTEID")}
    with running_proxy(tmp_path_factory.mktemp("sticky-dots"), [{"path": "/", "to": "balancer://app/"}],
                       workers=1, balancers=balancers) as proxy:
        yield proxy
    a.close()
    b.close()


def test_a_sticky_cookie_of_dots_costs_its_length_not_its_square(sticky_proxy):
    """#2: each dot of `ROUTEID=...` was tried as the start of a route, a slice and a hash
    each: 96 fields of 8,170 dots (inside the header limits) held the worker 1,464 ms, and
    another client's request waited as long.  The last field still names member b."""
    dots = "".join("Cookie: ROUTEID=" + "." * 8170 + "\r\n" for _ in range(96))
    client = KeepAlive(sticky_proxy)
    try:
        started = time.monotonic()
        status, _, body = client.get("/x", dots + "Cookie: ROUTEID=s3ss10n.b\r\n")
        took = time.monotonic() - started
    finally:
        client.close()
    assert (status, body) == (200, b"b")
    assert took < 0.4, f"{took * 1000:.0f} ms for one request"      # before: ~1,500 ms; after: ~10 ms
