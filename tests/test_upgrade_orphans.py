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


def _generations(proxy) -> dict[int, int]:
    """pid -> generation of every worker in /metrics (`mpm_worker_state`): the scoreboard's
    rows, a dead master's workers included (`mpmctl status` lists only the master's own)."""
    return {int(labels["pid"]): int(labels["generation"])
            for (name, items), value in scrape(proxy).items() if name == "mpm_worker_state" and value == 1
            for labels in [dict(items)]}


SLOW_WORKER_START = "import os, time\nos.register_at_fork(after_in_child=lambda: time.sleep(1.0))\n"


def _upgrading(proxy_factory, backend, tmp_path, workers: int):
    """A proxy whose workers start slowly, and the `mpmctl upgrade` started on it."""
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(SLOW_WORKER_START)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=workers, admin=admin_section(),
                          environ={"PYTHONPATH": str(tmp_path / "slow")})
    upgrade = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proxy, upgrade


@pytest.mark.timeout(90)
def test_the_rows_of_a_dead_successors_workers_are_freed(proxy_factory, http_backend, tmp_path):
    proxy, upgrade = _upgrading(proxy_factory, http_backend(), tmp_path, workers=2)
    master = proxy.proc.pid
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
    wait_for(lambda: all(generation == 1 for generation in _generations(proxy).values()), 10, 0.2,
             "only generation 1's workers in /metrics")
    assert set(_generations(proxy)) == set(proxy.worker_pids())
    assert proxy.proc.poll() is None and proxy.status()["master_pid"] == master


@pytest.mark.timeout(90)
def test_a_reload_after_a_dead_successor_numbers_its_generation_past_the_orphans(proxy_factory, http_backend,
                                                                                tmp_path):
    """The dead successor counted on from our generation: its workers are generation 2 while
    they live.  A reload must start generation 3, not a second generation 2: a worker of the
    dead master that has not gone yet (stopped here: stuck, or swapped out) would otherwise be
    counted as serving the reload's configuration, and be offered its tunnels at a hand-over.
    As an earlier generation, it is named in the reload's answer while it holds its place in
    the listening sockets."""
    proxy, upgrade = _upgrading(proxy_factory, http_backend(), tmp_path, workers=1)
    master = proxy.proc.pid
    successor, orphan = None, None
    try:
        successor, workers = _successor_with_workers(master, 30)
        proxy.seen_pids.update([successor, *workers])
        orphan = workers[0]
        os.kill(orphan, signal.SIGSTOP)
        os.kill(successor, signal.SIGKILL)
        out, err = upgrade.communicate(timeout=60)
        assert upgrade.returncode != 0, out + err
        assert _generations(proxy)[orphan] == 2
        reload = proxy.mpmctl("reload", "--wait", "4")
        assert reload.returncode == 0, reload.stdout + reload.stderr
        status = proxy.status()
        assert status["generation"] == 3, status
        assert f"pid {orphan} of an earlier generation" in reload.stderr, reload.stderr
        assert orphan not in proxy.worker_pids()
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
        if orphan is not None:
            os.kill(orphan, signal.SIGCONT)
        if successor is None:
            for child in psutil.Process(master).children(recursive=True):
                child.kill()
    wait_for(lambda: not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE,
             20, 0.1, "the orphan to exit once resumed")
    wait_for(lambda: _generations(proxy) == dict.fromkeys(proxy.worker_pids(), 3), 10, 0.1,
             "only generation 3's worker in /metrics")
