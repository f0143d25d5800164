"""A route's own refusals carry its name: the per-client 429 of a rate-limited route, in
/metrics and in the access log, under that route and not `-` (which is for what was answered
before any route took the request: a malformed head, a 404).  An operator who limits `/login`
looks for its 429s under `route="/login/"`."""

from __future__ import annotations

import pytest
from admin_util import admin_section, scrape, value
from httpclient import read_raw_response
from proxyproc import wait_access
from support import wait_for


@pytest.mark.timeout(30)
def test_a_rate_limited_routes_429s_count_and_log_under_it(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/login/", "to": backend.url + "/login/",
                            "per_client": {"requests": {"rate": 1, "burst": 1}}},
                           {"path": "/", "to": backend.url + "/"}], workers=1, admin=admin_section())
    statuses = []
    for _ in range(3):
        with proxy.connect() as sock:
            sock.sendall(b"GET /login/labelled HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            statuses.append(read_raw_response(sock).status)
    assert statuses == [200, 429, 429]
    # (a scrape right after the last response can precede its count by a moment)
    samples = wait_for(lambda: (s := scrape(proxy)) and value(s, "mpm_requests_total", code_class="4xx") == 2 and s,
                       5, 0.1, "both 429s counted")
    assert value(samples, "mpm_requests_total", route="/login/", code_class="4xx") == 2
    assert value(samples, "mpm_requests_total", route="-", code_class="4xx") == 0
    lines = wait_access(proxy, "GET /login/labelled", 3)
    refused = [line for line in lines if '" 429 ' in line]
    assert len(refused) == 2 and all('"/login/" "-"' in line for line in refused), lines
