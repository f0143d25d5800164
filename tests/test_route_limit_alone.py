"""`per_client` on a route with no `limits.per_client` (review 2026-12-03-rewrite #3): the route's
limit applies, as nginx's limit_req in one location needs nothing at server level.  It used to be
silently ignored: no client table was made unless `limits.per_client` set something."""

from __future__ import annotations

from httpclient import read_raw_response
from proxyproc import running_proxy
from rawbackend import RawBackend


def _status(proxy, target: bytes) -> int:
    with proxy.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return read_raw_response(sock).status


def test_a_routes_per_client_limit_applies_without_a_global_one(tmp_path):
    backend = RawBackend()
    routes = [{"path": "/login", "to": backend.url + "/login", "per_client": {"requests": {"rate": "1/m", "burst": 2}}},
              {"path": "/", "to": backend.url + "/"}]
    try:
        with running_proxy(tmp_path, routes, workers=1) as proxy:
            assert [_status(proxy, b"/login") for _ in range(3)] == [200, 200, 429]
            assert [_status(proxy, b"/other") for _ in range(3)] == [200, 200, 200]    # no global limit
    finally:
        backend.close()
