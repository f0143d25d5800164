"""`mpmctl upgrade` says what happened (review 2026-12-03-upgrade:
docs/reviews/2026-12-03-upgrade/report.md).  Real masters, real backends, real mpmctl runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest
from proxyproc import ROOT
from support import wait_for


def _body(url: str, timeout: float = 20) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _pidfile(proxy) -> int | None:
    try:
        with open(os.path.join(proxy.dir, "run", "mpm.pid")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _stop_all(proxy, *masters) -> None:
    proxy.mpmctl("stop")
    for pid in masters:
        if pid:
            wait_for(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
                     30, 0.1, f"master {pid} to stop")


def _upgrading_during_a_slow_request(proxy_factory, http_backend, seconds: float):
    """A master with one worker busy with a `seconds`-long request (the old master then drains
    it after the hand-over), and `mpmctl upgrade` started: (proxy, old master's pid, the slow
    request's outcome once `thread` ends, thread, the mpmctl process)."""
    def handler(request, body):
        if request["target"] == "/slow":
            time.sleep(seconds)
        return 200, [], b"ok"
    proxy = proxy_factory([{"path": "/", "to": http_backend(handler).url + "/"}], workers=1)
    slow = {"began": time.monotonic()}
    thread = threading.Thread(target=lambda: slow.update(body=_body(proxy.url("/slow"))))
    thread.start()
    time.sleep(0.5)
    upgrading = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proxy, proxy.proc.pid, slow, thread, upgrading


@pytest.mark.timeout(60)
def test_an_upgrade_naming_another_file_is_refused(proxy_factory, http_backend):
    """#5: `mpmctl upgrade -c OTHER` checked OTHER, the new master read the old one's file,
    and mpmctl said "upgraded"."""
    one = http_backend(lambda request, body: (200, [], b"one"))
    proxy = proxy_factory([{"path": "/", "to": one.url + "/"}], workers=1)
    other = os.path.join(proxy.dir, "other.yaml")
    shutil.copy(proxy.config_path, other)
    try:
        result = subprocess.run([sys.executable, "-m", "mpm", "upgrade", "-c", other], capture_output=True,
                                text=True, timeout=60, cwd=ROOT)
        assert result.returncode != 0 and f"this master serves {proxy.config_path}" in result.stderr, result
        assert proxy.status()["master_pid"] == proxy.proc.pid and _body(proxy.url("/")) == b"one"
    finally:
        successor = _pidfile(proxy)
        if successor not in (None, proxy.proc.pid):       # an upgrade that went through after all
            _stop_all(proxy, successor)


@pytest.mark.timeout(60)
def test_an_upgrade_whose_interpreter_is_gone_fails_saying_why(proxy_factory, http_backend, tmp_path):
    """#6: a virtualenv rebuilt or removed under a running server: the exec of the new master
    fails in the old one, which answered "internal error (see the error log)"."""
    venv = os.path.dirname(os.path.dirname(sys.executable))
    fake = tmp_path / "venv"
    (fake / "bin").mkdir(parents=True)
    python = fake / "bin" / "python"
    os.symlink(os.path.realpath(sys.executable), python)
    shutil.copy(os.path.join(venv, "pyvenv.cfg"), fake / "pyvenv.cfg")
    os.symlink(os.path.join(venv, "lib"), fake / "lib")
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False, workers=1)
    proxy.write_config()
    proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
    proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
    proxy.proc = subprocess.Popen([str(python), "-m", "mpm", "start", "-c", proxy.config_path],
                                  stdout=proxy.stdout, stderr=proxy.stderr, cwd=ROOT)
    proxy.wait_ready()
    os.unlink(python)
    result = proxy.mpmctl("upgrade", timeout=60)
    assert result.returncode != 0, result
    assert f"cannot start the new master ({python}): No such file or directory" in result.stderr, result.stderr
    status = proxy.status()
    assert status["master_pid"] == proxy.proc.pid and status.get("upgrading_to") is None
    assert _body(proxy.url("/")) == b"hello"


@pytest.mark.timeout(120)
def test_an_upgrade_replaced_by_another_before_it_finished_is_reported_done(proxy_factory, http_backend):
    """#4: while the first `mpmctl upgrade` waited for the old master to finish a slow request,
    a second upgrade replaced its new master; the first then read the third master's status as
    the old one's and said "the new master exited; OLD still serves", exit 1."""
    proxy, old, slow, thread, first = _upgrading_during_a_slow_request(proxy_factory, http_backend, 6)
    middle = wait_for(lambda: (pid := _pidfile(proxy)) not in (None, old) and pid, 20, 0.05, "the hand-over")
    last = None
    try:
        time.sleep(0.5)
        second = proxy.mpmctl("upgrade", timeout=60)
        last = _pidfile(proxy)
        assert second.returncode == 0, second
        out, _ = first.communicate(timeout=60)
        thread.join(30)
        assert first.returncode == 0 and f"upgraded: master {old} -> {middle}" in out, out
        assert slow.get("body") == b"ok" and _body(proxy.url("/")) == b"ok"
    finally:
        if first.poll() is None:
            first.kill()
        _stop_all(proxy, middle, last)


@pytest.mark.timeout(90)
def test_a_tunnel_survives_an_upgrade_whose_old_master_was_killed_before_the_hand_over(proxy_factory, ws_backend):
    """#3: the old master SIGKILLed (the OOM killer, a kill -9) while `mpmctl upgrade` runs: the
    new master takes over (upgrade.follow) and mpmctl says "upgraded", but the old workers,
    seeing their master gone, exited at once and cut every tunnel, although the new master's
    workers were there to take them.  They hand them over now."""
    from websockets.sync.client import connect
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/ws/", "to": echo.url + "/"}], workers=1)
    old = proxy.proc.pid
    upgrade = None
    with connect(f"ws://127.0.0.1:{proxy.port}/ws/x", open_timeout=5) as tunnel:
        tunnel.send("before")
        assert tunnel.recv(timeout=5) == "before"
        try:
            upgrade = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            wait_for(lambda: "upgrade: started master pid" in proxy.error_text(), 10, 0.01, "the upgrade to start")
            os.kill(old, 9)                      # before the hand-over
            out, _ = upgrade.communicate(timeout=60)
            assert upgrade.returncode == 0, out
            tunnel.send("after")
            assert tunnel.recv(timeout=10) == "after"
        finally:
            if upgrade is not None and upgrade.poll() is None:
                upgrade.kill()
            _stop_all(proxy, _pidfile(proxy))


@pytest.mark.timeout(120)
def test_the_old_master_takes_the_service_back_when_the_new_one_dies_after_the_hand_over(proxy_factory,
                                                                                            http_backend):
    """#2: the new master crashed right after the hand-over (new code failing under its first
    traffic) while the old one still drained a slow request: the old master had closed its
    listeners and never looked at its successor again, so new clients were refused, and then
    it exited too.  Now it binds its listeners again, takes the control paths back and serves
    with a generation of its own; mpmctl says so, exit 1."""
    proxy, old, slow, thread, upgrading = _upgrading_during_a_slow_request(proxy_factory, http_backend, 4)
    try:
        new = wait_for(lambda: (pid := _pidfile(proxy)) not in (None, old) and pid, 20, 0.005, "the hand-over")
        os.kill(new, signal.SIGKILL)          # its workers exit as they see it gone
        status = wait_for(lambda: (answer := proxy.status()) and answer["master_pid"] == old and answer,
                          15, 0.1, "the old master answering on the control socket again")
        assert status["state"] == "running" and status["generation"] > 2, status   # past the dead one's 2
        assert _pidfile(proxy) == old
        assert wait_for(lambda: _served(proxy), 15, 0.1, "a new client served again") == b"ok"
        assert {worker["generation"] for worker in proxy.status()["workers"]} <= {1, status["generation"]}
        out, _ = upgrading.communicate(timeout=60)
        assert upgrading.returncode == 1, out
        assert f"the new master {new} exited after it took over; {old} took the service back" in out, out
        thread.join(30)
        assert slow.get("body") == b"ok"            # the request the old worker drained
        assert _body(proxy.url("/")) == b"ok" and proxy.proc.poll() is None
        assert "taking the service back" in proxy.error_text()
    finally:
        if upgrading.poll() is None:
            upgrading.kill()


def _served(proxy) -> bytes | None:
    try:
        return _body(proxy.url("/"), timeout=2)
    except OSError:
        return None


@pytest.mark.timeout(120)
def test_a_stop_after_the_hand_over_is_not_undone_by_the_old_master(proxy_factory, http_backend):
    """The other way the new master ends while the old one drains: `mpmctl stop`, which
    reaches the new master once it holds the control paths.  It exits 0, and the old master
    must not take the service back: it finishes its request and exits, and nothing serves."""
    proxy, old, slow, thread, upgrading = _upgrading_during_a_slow_request(proxy_factory, http_backend, 4)
    try:
        new = wait_for(lambda: (pid := _pidfile(proxy)) not in (None, old) and pid, 20, 0.005, "the hand-over")
        assert proxy.mpmctl("stop").returncode == 0
        wait_for(lambda: not psutil.pid_exists(new) or psutil.Process(new).status() == "zombie", 30, 0.1,
                 "the new master to stop")
        thread.join(30)
        assert slow.get("body") == b"ok"
        assert proxy.proc.wait(timeout=30) == 0          # the old master exited after its request
        assert _served(proxy) is None
        assert "taking the service back" not in proxy.error_text()
    finally:
        if upgrading.poll() is None:
            upgrading.kill()


@pytest.mark.timeout(120)
def test_the_fall_back_happens_though_the_last_drained_request_ends_right_after(proxy_factory, http_backend):
    """Review 2026-12-04 #3: the new master died ~0.1 s before the old master's last request
    ended; the old master saw its last worker go first and exited ("all workers gone"), and
    nothing served.  A pending fall-back now keeps it, and starts at the SIGCHLD."""
    proxy, old, slow, thread, upgrading = _upgrading_during_a_slow_request(proxy_factory, http_backend, 3)
    try:
        new = wait_for(lambda: (pid := _pidfile(proxy)) not in (None, old) and pid, 20, 0.005, "the hand-over")
        time.sleep(max(slow["began"] + 3 - 0.05 - time.monotonic(), 0))   # the request ends ~50 ms after this
        os.kill(new, signal.SIGKILL)
        thread.join(30)
        assert slow.get("body") == b"ok"
        status = wait_for(lambda: (answer := proxy.status()) and answer["master_pid"] == old and answer,
                          15, 0.1, "the old master answering on the control socket again")
        assert status["state"] == "running" and proxy.proc.poll() is None
        assert wait_for(lambda: _served(proxy), 15, 0.1, "a new client served again") == b"ok"
    finally:
        if upgrading.poll() is None:
            upgrading.kill()
