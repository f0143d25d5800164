"""Who `mpmctl` controls while `mpmctl upgrade` runs: the old master, until the new one has
taken over (nginx's pid.oldbin model).  Before, the new master took the pidfile and the
control socket the moment it started: `mpmctl stop` then stopped *it*, said "stopped", and the
old master served on with neither.

The new master's workers are held a few seconds after their fork (a sitecustomize on the
masters' PYTHONPATH registers an at-fork hook, active only in the process `mpmctl upgrade`
starts), so the commands surely come after it has bound its control socket and before it
serves.  Real masters, started through the CLI; everything is stopped by pid."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from proxyproc import ROOT
from support import wait_for

HOLD_NEW_WORKERS = """import os, time
if os.environ.get("MPM_UPGRADE_FROM"):
    os.register_at_fork(after_in_child=lambda: time.sleep({hold}))
"""


def _proxy(proxy_factory, http_backend, tmp_path, hold: float):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(HOLD_NEW_WORKERS.format(hold=hold))
    backend = http_backend()
    return proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                         environ={"PYTHONPATH": str(tmp_path / "site")})


def _start_upgrade(proxy) -> tuple[subprocess.Popen, int]:
    """`mpmctl upgrade` under way: (that mpmctl, the new master's pid) once the new master
    has bound its control socket (on its staging path; a release before this fix took the
    real one, and the pidfile)."""
    upgrade = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = wait_for(lambda: re.search(r"upgrade: started master pid (\d+)", proxy.error_text()), 10, 0.02,
                       "the upgrade to start the next master")
    new = int(started.group(1))
    proxy.seen_pids.add(new)
    run = os.path.join(proxy.dir, "run")
    wait_for(lambda: any(name.startswith("mpm.sock.") for name in os.listdir(run))
             or open(os.path.join(run, "mpm.pid")).read().strip() == str(new), 5, 0.01,
             "the new master's control socket")
    return upgrade, new


def _finish(upgrade: subprocess.Popen, new: int) -> str:
    try:
        output, _ = upgrade.communicate(timeout=30)
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
            upgrade.wait()
        if not _gone(new):
            family = [psutil.Process(new), *psutil.Process(new).children()]
            for process in family:
                process.kill()
            psutil.wait_procs(family, 10)
    return output


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.mark.timeout(60)
def test_mpmctl_reaches_the_old_master_until_the_hand_over_and_stop_stops_both(proxy_factory, http_backend,
                                                                               tmp_path):
    proxy = _proxy(proxy_factory, http_backend, tmp_path, hold=6.0)     # mpmctl x3 on a loaded machine
    old = proxy.proc.pid
    upgrade, new = _start_upgrade(proxy)
    try:
        status = proxy.mpmctl("status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["master_pid"] == old, status.stdout
        assert json.loads(status.stdout)["upgrading_to"] == new
        with open(os.path.join(proxy.dir, "run", "mpm.pid")) as f:
            assert int(f.read()) == old, "the pidfile names the new master before it serves"
        reload = proxy.mpmctl("reload")
        assert reload.returncode != 0 and "upgrade is under way" in reload.stderr, reload.stdout + reload.stderr
        stop = proxy.mpmctl("stop", timeout=40)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        # "stopped" means the service: neither master is left, nothing accepts
        assert proxy.proc.wait(5) == 0
        wait_for(lambda: _gone(new), 5, 0.05, "the new master to be gone too")
        assert _refused(proxy.port), "something still accepts on the listener after `mpmctl stop`"
        assert "upgrade abandoned" in proxy.error_text()
        assert os.listdir(os.path.join(proxy.dir, "run")) == [], "control files left behind"
    finally:
        output = _finish(upgrade, new)
    assert upgrade.returncode != 0 and "upgrade abandoned" in output and "still serves" not in output, output


@pytest.mark.timeout(60)
def test_the_new_master_takes_the_control_paths_if_the_old_one_dies_before_the_hand_over(
        proxy_factory, http_backend, tmp_path):
    """SIGKILL of the old master mid-upgrade (or an old master from a release that does not
    rename the socket over): the new master, once its predecessor is gone, takes them itself."""
    proxy = _proxy(proxy_factory, http_backend, tmp_path, hold=2.0)
    upgrade, new = _start_upgrade(proxy)
    try:
        os.kill(proxy.proc.pid, signal.SIGKILL)
        proxy.proc.wait(5)

        def answered_by_new():
            result = proxy.mpmctl("status", "--json")
            return result.returncode == 0 and json.loads(result.stdout)["master_pid"] == new
        wait_for(answered_by_new, 15, 0.2, "`mpmctl status` to answer from the new master")
        with open(os.path.join(proxy.dir, "run", "mpm.pid")) as f:
            assert int(f.read()) == new
        assert sorted(os.listdir(os.path.join(proxy.dir, "run"))) == ["mpm.pid", "mpm.sock"]
        stop = proxy.mpmctl("stop", timeout=40)
        assert stop.returncode == 0 and _gone(new), stop.stdout + stop.stderr
    finally:
        _finish(upgrade, new)


@pytest.mark.timeout(90)
def test_an_upgrade_to_fewer_workers_hands_over(proxy_factory, http_backend):
    """The old master took the new one for ready when as many of its workers as its own were:
    an upgrade whose config lowers mpm.workers failed after 30 s, every time.  The new master
    now says when its generation serves."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2)
    proxy.config["mpm"]["workers"] = 1
    proxy.write_config()
    result = proxy.mpmctl("upgrade", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    new = int(re.search(r"-> (\d+)", result.stdout).group(1))
    proxy.seen_pids.add(new)
    try:
        status = proxy.status()
        assert status["master_pid"] == new and len(proxy.worker_pids()) == 1, status
    finally:
        stop = proxy.mpmctl("stop", timeout=40)
        assert stop.returncode == 0 and _gone(new), stop.stdout + stop.stderr


def _log_files_held(pid: int) -> list[str]:
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if ".log" in target:
            held.append(os.path.basename(target))
    return held


@pytest.mark.timeout(60)
def test_logs_rotated_during_an_upgrade_are_reopened_by_the_master_that_serves_after_it(
        proxy_factory, http_backend, tmp_path):
    """`mpmctl reopen` during an upgrade reaches the master that holds the control socket, the
    old one; the new master, which opened its error log before the rotation, reopens its logs
    at the hand-over (review 2026-12-04-today #7: it wrote on into error.log.1, which
    logrotate without `delaycompress` compresses or deletes)."""
    proxy = _proxy(proxy_factory, http_backend, tmp_path, hold=3.0)
    upgrade, new = _start_upgrade(proxy)
    try:
        assert "error.log" in _log_files_held(new)          # opened before the rotation
        os.rename(proxy.error_log, proxy.error_log + ".1")
        os.rename(proxy.access_log, proxy.access_log + ".1")
        done = proxy.mpmctl("reopen")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: open(os.path.join(proxy.dir, "run", "mpm.pid")).read().split()[0] == str(new), 20, 0.05,
                 "the hand-over")
        wait_for(lambda: "error.log" in _log_files_held(new), 5, 0.05, "the new master's error log reopened")
        assert "error.log.1" not in _log_files_held(new), _log_files_held(new)
        for worker in psutil.Process(new).children():
            assert not [name for name in _log_files_held(worker.pid) if name.endswith(".1")], worker.pid
    finally:
        output = _finish(upgrade, new)
    assert upgrade.returncode == 0, output
