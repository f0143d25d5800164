"""A reload serves as a fresh start with the same file would, or is refused whole (review
2026-12-03-reload: docs/reviews/2026-12-03-reload/report.md).  Real masters, real backends,
real clients."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from support import wait_for


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.timeout(60)
@pytest.mark.parametrize("found_in", ["members", "dns"])
def test_a_reload_that_removes_health_checks_forgets_their_verdict(proxy_factory, http_backend, found_in):
    """Review #4: a member the checks had taken down stayed down for good after a reload that
    removed `health:` (its verdict was carried by URL, and nothing checked it again): every
    request 503 until a restart.  A failed request's own verdict (`retry`) still carries."""
    backend = http_backend(lambda request, body: (500 if request["target"] == "/health" else 200, [], b"x"))
    health = {"method": "GET", "path": "/health", "interval": 0.2, "fails": 1, "passes": 1, "timeout": 1}
    where = ({"discover": {"dns": "127.0.0.1", "type": "A", "port": backend.port}} if found_in == "dns"
             else {"members": [{"url": backend.url}]})
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1,
                          balancers={"app": {**where, "health": health}})
    wait_for(lambda: _status(proxy.url("/x")) == 503, 10, 0.1, "the checks take the member down")
    del proxy.config["balancers"]["app"]["health"]
    proxy.write_config()
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    time.sleep(0.5)       # what the checks would have needed to say anything
    assert [_status(proxy.url("/x")) for _ in range(3)] == [200, 200, 200]
