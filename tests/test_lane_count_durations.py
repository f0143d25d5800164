"""The durations the lane's C counts agree with the access log's %D for
the same exchanges, route by route, on one keep-alive connection that alternates between routes."""

from __future__ import annotations

import re
from bisect import bisect_left

import pytest
from admin_util import admin_section, scrape, value
from lanecountutil import answer, request, response
from proxyproc import Proxy
from rawbackend import RawBackend
from support import wait_for

from shm.metrics import DURATION_BOUNDS

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("count", ["1", "0"])
def test_durations_agree_with_the_access_log(tmp_path, count):
    one, two = RawBackend(answer), RawBackend(answer)
    proxy = Proxy(tmp_path, [{"path": "/a/", "to": one.url + "/a/"}, {"path": "/b/", "to": one.url + "/b/"},
                             {"path": "/c/", "to": two.url + "/c/"}],
                  workers=1, environ={"MPM_NATIVE_LANE_COUNT": count}, admin=admin_section())
    proxy.start()
    try:
        paths = ["/a/sleep/0", "/a/sleep/0.03", "/b/sleep/0.2", "/a/sleep/0.07", "/b/sleep/0", "/c/sleep/0.35",
                 "/a/sleep/0.15", "/b/sleep/0.6", "/c/sleep/0", "/a/sleep/0"]
        with proxy.connect(10) as sock:
            for path in paths:
                sock.sendall(request(path))
                response(sock)
        lines = wait_for(lambda: (lambda ls: ls if len(ls) == len(paths) else None)(proxy.access_lines()), 10, 0.1,
                         "the access log")
        samples = scrape(proxy)
        for route in ("/a/", "/b/", "/c/"):
            parsed = [re.search(r'" (\d+) "([^"]*)" "[^"]*" [+-]$', line).groups() for line in lines]
            micros = [int(d) for d, r in parsed if r == route]
            mine = micros
            assert value(samples, "mpm_request_duration_seconds_count", route=route) == len(mine)
            assert value(samples, "mpm_request_duration_seconds_sum", route=route) == pytest.approx(
                sum(micros) / 1e6, abs=0.002 * len(mine)), (route, micros)
            buckets = {}
            for (name, labels), number in samples.items():
                labels = dict(labels)
                if name == "mpm_request_duration_seconds_bucket" and labels["route"] == route:
                    buckets[labels["le"]] = number
            for i, bound in enumerate(DURATION_BOUNDS):
                expected = sum(1 for m in micros if bisect_left(DURATION_BOUNDS, m / 1e6) <= i)
                got = buckets[repr(bound) if repr(bound) in buckets else str(bound)]
                assert abs(got - expected) <= 0 if min(abs(m / 1e6 - bound) for m in micros) > 0.002 else True, \
                    (route, bound, got, expected, micros)
    finally:
        proxy.stop()
