"""The long fuzz campaign (issue #15, part 6): the suite's fuzz test for as long as asked.

    .venv/bin/python tests/fuzz_campaign.py --minutes 30 [--out fuzz-findings.json] [--workers 2]

A real master and the h11 fuzz backend (tests/fuzz_http.py) run for the whole campaign;
Hypothesis runs rounds of examples, and every failure (already shrunk by Hypothesis to a
minimal example) is written down once per kind, with its bytes, and the campaign goes on.
A worker that died is noted and the master is restarted.  What it finds becomes a test in
tests/test_fuzz_regressions.py once fixed.  Run it from the checkout's root."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import psutil  # noqa: E402
from fuzz_http import FuzzBackend, check, example  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from proxyproc import Proxy  # noqa: E402

BATCH = 200


def kind_of(message: str) -> str:
    """What kind of failure, without the bytes that differ from one example to the next."""
    first = message.splitlines()[0] if message else "?"
    first = re.sub(r"b'.*", "", first)
    first = re.sub(r"b\".*", "", first)
    return re.sub(r"[0-9]+", "N", first).strip()[:160]


def start(directory: str, backend: FuzzBackend, workers: int) -> tuple[Proxy, list]:
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/", "preserve_host": True}], workers=workers,
                  timeouts={"client_header": 2, "keepalive": 2, "proxy": 5}, log={"level": "warning"})
    proxy.start()
    return proxy, [psutil.Process(pid) for pid in proxy.worker_pids()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--out", default="fuzz-findings.json")
    ap.add_argument("--workers", type=int, default=2)
    opts = ap.parse_args()
    backend = FuzzBackend()
    root = tempfile.mkdtemp(prefix="mpm-fuzz-")
    proxy, workers = start(os.path.join(root, "proxy0"), backend, opts.workers)
    findings: dict[str, dict] = {}
    state = {"examples": 0, "failures": 0, "restarts": 0}
    deadline = time.monotonic() + opts.minutes * 60

    @settings(max_examples=BATCH, deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(data=example())
    def run(data):
        stream, cuts = data
        state["examples"] += 1
        check(proxy.port, backend, stream, cuts)
        assert all(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), "a worker died"

    try:
        while time.monotonic() < deadline:
            try:
                run()
            except Exception as exc:       # noqa: BLE001 - every failure is a finding
                state["failures"] += 1
                # Hypothesis reports several distinct failures of one round as an ExceptionGroup.
                for one in getattr(exc, "exceptions", None) or [exc]:
                    message = str(one)
                    kind = kind_of(message)
                    entry = findings.setdefault(kind, {"kind": kind, "count": 0, "example": message[:4000]})
                    entry["count"] += 1
                    print(f"[{time.strftime('%H:%M:%S')}] {'new' if entry['count'] == 1 else 'again'}: {kind}",
                          flush=True)
                if not all(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
                    proxy.stop()
                    state["restarts"] += 1
                    proxy, workers = start(os.path.join(root, f"proxy{state['restarts']}"), backend, opts.workers)
            print(f"[{time.strftime('%H:%M:%S')}] {state['examples']} examples, {state['failures']} failures, "
                  f"{len(findings)} kinds", flush=True)
            _write(opts.out, state, opts.minutes, findings)
    finally:
        proxy.stop()
        backend.close()
    _write(opts.out, state, opts.minutes, findings)
    print(json.dumps(state), f"{len(findings)} kinds of failure -> {opts.out}")
    return 1 if findings else 0


def _write(path: str, state: dict, minutes: float, findings: dict) -> None:
    """The report so far (rewritten after every round, so a stopped campaign keeps its findings)."""
    with open(path, "w") as f:
        json.dump({**state, "minutes": minutes, "kinds": list(findings.values())}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
