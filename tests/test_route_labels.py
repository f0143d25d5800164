"""/metrics `route` labels: "-" (answered before routing) and "(other)" (the routes past the
registry's 63 names) are reserved, and a route whose pattern is literally one of them is
labelled "~-" / "~(other)".  Before, `match: "-"` was counted as "no route" (its 2xx under
route="-") and `match: "(other)"` with 62 more route names gave duplicate series in one
exposition (Prometheus drops them as duplicate samples; promtool does not flag them).

A real master with 64 routes, real requests, the exposition read as text."""

from __future__ import annotations

import collections
import shutil
import subprocess

import pytest
from admin_util import admin_port, admin_section, get, scrape, value
from rawsock import get_status


@pytest.mark.timeout(40)
def test_reserved_route_labels_name_one_series_each(proxy_factory, http_backend):
    backend = http_backend()
    to = backend.url + "/"
    routes = [{"match": "(other)", "to": to}, {"match": "-", "to": to}, {"match": "~x", "to": to}]
    routes += [{"path": f"/r{i}/", "to": to} for i in range(61)]      # the last one past the 63 names
    proxy = proxy_factory(routes, workers=1, admin=admin_section())
    for path, expected in (("/another", 200), ("/a-b", 200), ("/~x", 200), ("/r60/", 200), ("/zzz", 404)):
        assert get_status(proxy, path, "", timeout=5) == expected, path

    status, _, body = get(admin_port(proxy), "/metrics")
    assert status == 200
    series = collections.Counter(line.rsplit(" ", 1)[0] for line in body.decode().splitlines()
                                 if line and not line.startswith("#"))
    assert not [name for name, count in series.items() if count > 1], "duplicate series in one exposition"
    samples = scrape(proxy)

    def requests(route: str, code_class: str) -> float:
        return value(samples, "mpm_requests_total", route=route, code_class=code_class)
    assert requests("~(other)", "2xx") == 1 and requests("~-", "2xx") == 1 and requests("~~x", "2xx") == 1
    assert requests("(other)", "2xx") == 1                            # /r60/, past the registry's names
    assert requests("-", "2xx") == 0 and requests("-", "4xx") == 1    # only what no route answered
    promtool = shutil.which("promtool")
    if promtool is not None:
        lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert lint.returncode == 0, lint
