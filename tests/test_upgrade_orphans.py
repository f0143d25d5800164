"""A successor master that dies during `mpmctl upgrade` (an OOM kill, a crash of the new code)
after forking its workers: the master that serves on frees their scoreboard rows once they
have exited.  Nobody else reaps them (their parent is gone), and before, /metrics showed them
for ever (`mpm_worker_state` for pids that no longer existed) and the serving generation's
workers kept seeing a newer generation that would never come.

Every worker waits 1 s after its fork (a `sitecustomize.py` on PYTHONPATH): since the ready
pipe, a successor can hand over within milliseconds of forking its workers, before the test
has killed it, and the upgrade then succeeds (CI of stop 34)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from admin_util import admin_section, scrape
from proxyproc import ROOT
from support import wait_for


def _successor_with_workers(master: int, timeout: float) -> tuple[int, list[int]]:
    """The `mpm start` child of `master` once it has forked workers: (its pid, theirs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(master).children():
            try:
                command = " ".join(child.cmdline())
                if "mpm: master" in command or " start" in command:     # titled, or not yet
                    workers = [kid.pid for kid in child.children()]
                    if workers:
                        return child.pid, workers
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.005)
    raise AssertionError("the successor never had workers")


SLOW_WORKER_START = "import os, time\nos.register_at_fork(after_in_child=lambda: time.sleep(1.0))\n"


@pytest.mark.timeout(90)
def test_the_rows_of_a_dead_successors_workers_are_freed(proxy_factory, http_backend, tmp_path):
    backend = http_backend()
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(SLOW_WORKER_START)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2, admin=admin_section(),
                          environ={"PYTHONPATH": str(tmp_path / "slow")})
    master = proxy.proc.pid
    upgrade = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    successor = None
    try:
        successor, workers = _successor_with_workers(master, 30)
        proxy.seen_pids.update([successor, *workers])
        os.kill(successor, signal.SIGKILL)
        out, err = upgrade.communicate(timeout=60)
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
        if successor is None:       # never caught: whatever master it became must not outlive us
            for child in psutil.Process(master).children(recursive=True):
                child.kill()
    assert upgrade.returncode != 0, out + err
    wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                             for pid in workers), 20, 0.1, "the successor's workers to exit")

    def states() -> set:
        return {(labels["pid"], labels["generation"], labels["state"])
                for (name, items), value in scrape(proxy).items() if name == "mpm_worker_state" and value == 1
                for labels in [dict(items)]}
    wait_for(lambda: all(int(generation) == 1 for _, generation, _ in states()), 10, 0.2,
             "only generation 1's workers in /metrics")
    assert {int(pid) for pid, _, _ in states()} == set(proxy.worker_pids())
    assert proxy.proc.poll() is None and proxy.status()["master_pid"] == master
