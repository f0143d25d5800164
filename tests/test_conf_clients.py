"""Configuration of issue #15: limits.per_client, limits.trusted_proxies, listener
proxy_protocol, route origins / origins_required / per_client / proxy_protocol, member
proxy_protocol; what they build and their FILE:LINE errors (with did-you-mean)."""

from __future__ import annotations

import ipaddress

import pytest
from test_conf import errors_of, write

from conf import load_config

GOOD = """
listen:
  - "127.0.0.1:8000"
  - {address: "127.0.0.1:8001", proxy_protocol: true}
limits:
  per_client: {connections: 200, tunnels: 100, requests: {rate: 100, burst: 200}, table: 4096}
  trusted_proxies: ["10.0.0.0/8", "::1", "192.0.2.7"]
routes:
  - {path: /login, to: "http://127.0.0.1:9001/login", per_client: {requests: {rate: "30/m"}}}
  - {path: /ws/, to: "ws://127.0.0.1:9001/ws/", origins: ["HTTPS://App.Example.com:443", "https://*.example.org:8443"],
     origins_required: true, per_client: {tunnels: 5, connections: 2}, proxy_protocol: v1}
  - {path: /, to: "balancer://c/"}
balancers:
  c: {members: [{url: "http://127.0.0.1:9002", proxy_protocol: v2}, {url: "http://127.0.0.1:9003"}]}
"""


def test_everything_builds(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert [listener.proxy_protocol for listener in config.listeners] == [False, True]
    per = config.limits.per_client
    assert (per.connections, per.tunnels, per.requests.rate, per.requests.burst, per.table) == (200, 100, 100.0, 200, 4096)
    assert config.limits.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"),
                                             ipaddress.ip_network("192.0.2.7/32"))
    login, ws, _ = config.routes
    assert login.per_client.requests.rate == 0.5 and login.per_client.requests.burst == 1   # one second's worth, at least 1
    assert ws.origins == ("https://app.example.com", "https://*.example.org:8443") and ws.origins_required
    assert (ws.per_client.tunnels, ws.per_client.connections) == (5, 2)
    assert ws.target.backend.proxy_protocol == 1 and login.target.backend.proxy_protocol == 0
    assert [m.backend.proxy_protocol for m in config.balancers["c"].members] == [2, 0]
    # A backend spoken to with a PROXY header is a pool of its own.
    assert config.balancers["c"].members[0].backend.key != login.target.backend.key


def test_nothing_configured_means_nothing_counted(tmp_path):
    config = load_config(write(tmp_path, 'listen: ["127.0.0.1:8000"]\nroutes: []\n'))
    assert config.limits.per_client is None and config.limits.trusted_proxies == ()
    assert not config.listeners[0].proxy_protocol


LISTEN = 'listen: ["127.0.0.1:8000"]\n'
ROUTE = '  - {path: /, to: "http://127.0.0.1:9001/"'
BROKEN = {
    "per_client unknown key": (LISTEN + "limits:\n  per_client: {conections: 5}\n", 3,
                               "unknown key 'conections' in limits.per_client (did you mean 'connections'?)"),
    "per_client negative": (LISTEN + "limits:\n  per_client: {tunnels: -1}\n", 3,
                            "limits.per_client.tunnels must be an integer >= 0"),
    "rate zero": (LISTEN + "limits:\n  per_client: {requests: {rate: 0}}\n", 3,
                  "limits.per_client.requests.rate must be a positive number of requests per second"),
    "rate text": (LISTEN + "limits:\n  per_client: {requests: {rate: 10/d}}\n", 3, '"N/s", "N/m", "N/h"'),
    "rate missing": (LISTEN + "limits:\n  per_client: {requests: {burst: 5}}\n", 3,
                     "limits.per_client.requests is missing 'rate'"),
    "burst zero": (LISTEN + "limits:\n  per_client: {requests: {rate: 5, burst: 0}}\n", 3,
                   "limits.per_client.requests.burst must be an integer >= 1"),
    "table too small": (LISTEN + "limits:\n  per_client: {table: 8}\n", 3,
                        "limits.per_client.table must be an integer from 64 to 1048576"),
    "trusted proxy": (LISTEN + "limits:\n  trusted_proxies: [\"10.0.0.0/8\", proxy.example]\n", 3,
                      "limits.trusted_proxies entries must be IP addresses or networks"),
    "listener proxy_protocol": ('listen: [{address: "127.0.0.1:8000", proxy_protocol: v2}]\n', 1,
                                "listen.proxy_protocol must be true or false"),
    "route proxy_protocol": (LISTEN + "routes:\n" + ROUTE + ", proxy_protocol: v3}\n", 3,
                             "route.proxy_protocol must be one of v1, v2; got 'v3'"),
    "member proxy_protocol": (LISTEN + 'balancers:\n  c: {members: [{url: "http://127.0.0.1:9", proxy_protocol: yes}]}\n',
                              3, "balancers.c.members.proxy_protocol must be"),
    "proxy_protocol on a balancer route": (
        LISTEN + 'routes:\n  - {path: /, to: "balancer://c/", proxy_protocol: v1}\n'
                 'balancers:\n  c: {members: [{url: "http://127.0.0.1:9"}]}\n', 3,
        "route.proxy_protocol does not apply to a balancer:// target; set proxy_protocol on its members"),
    "origin with a path": (LISTEN + "routes:\n" + ROUTE + ', origins: ["https://a.example/app"]}\n', 3,
                           "route.origins: string 'https://a.example/app' is not an origin"),
    "origins not a list": (LISTEN + "routes:\n" + ROUTE + ', origins: "https://a.example"}\n', 3,
                           "route.origins must be a list of origins"),
    "origins_required alone": (LISTEN + "routes:\n" + ROUTE + ", origins_required: true}\n", 3,
                               "route.origins_required needs the route's 'origins' list"),
    "route per_client table": (LISTEN + "routes:\n" + ROUTE + ", per_client: {table: 100}}\n", 3,
                               "unknown key 'table' in route.per_client"),
}


@pytest.mark.parametrize("text, line, message", BROKEN.values(), ids=BROKEN.keys())
def test_broken_client_settings_report_file_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    errors = errors_of(path)
    assert any(e.startswith(f"{path}:{line}: ") and message in e for e in errors), "\n".join(errors)
