"""Review 2026-12-03-balancers: what a careless operator, a hostile client and a hostile DNS
server could do to the balancers (docs/reviews/2026-12-03-balancers/report.md).

The configuration check runs the loader in-process (it opens no socket); the rest runs a real
master and worker (proxyproc.Proxy) with real members on loopback."""

from __future__ import annotations

import pytest

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
