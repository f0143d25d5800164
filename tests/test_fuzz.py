"""The bounded fuzz run of the suite (issue #15, part 6): about FUZZ_SECONDS of Hypothesis
examples against a real master with two workers (tests/fuzz_http.py says what is generated
and which invariants hold).  `python tests/fuzz_campaign.py --minutes N` is the long run."""

from __future__ import annotations

import os
import time

import psutil
import pytest
from fuzz_http import FuzzBackend, check, example
from hypothesis import HealthCheck, given, settings
from proxyproc import running_proxy

FUZZ_SECONDS = float(os.environ.get("MPM_FUZZ_SECONDS", "60"))
BATCH = 100                  # examples per Hypothesis run: the granularity of the time budget


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    backend = FuzzBackend()
    with running_proxy(tmp_path_factory.mktemp("fuzz"), [{"path": "/", "to": backend.url + "/", "preserve_host": True}],
                       workers=2, timeouts={"client_header": 2, "keepalive": 2, "proxy": 5},
                       log={"level": "warning"}) as proxy:
        workers = [psutil.Process(pid) for pid in proxy.worker_pids()]
        yield proxy, backend, workers
    backend.close()


@pytest.mark.timeout(FUZZ_SECONDS + 300)
def test_fuzz_what_clients_send_before_a_tunnel(target):
    """Rounds of BATCH examples until FUZZ_SECONDS have passed (a round that fails shrinks
    its failure to a minimal example and raises it)."""
    proxy, backend, workers = target
    started = time.monotonic()
    ran = [0]

    @settings(max_examples=BATCH, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(data=example())
    def run(data):
        stream, cuts = data
        ran[0] += 1
        check(proxy.port, backend, stream, cuts)
        assert all(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), "a worker died"

    while time.monotonic() - started < FUZZ_SECONDS:
        run()
    assert proxy.worker_pids() == [w.pid for w in workers], "a worker was replaced"
    print(f"fuzz: {ran[0]} examples in {time.monotonic() - started:.0f}s")
