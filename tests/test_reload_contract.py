"""A reload serves as a fresh start with the same file would, or is refused whole (review
2026-12-03-reload: docs/reviews/2026-12-03-reload/report.md).  Real masters, real backends,
real clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from proxyproc import ROOT
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
    # Once `mpmctl reload` has answered, no worker of the old generation takes new connections
    # (mpm.settling; before, CI once saw three 503s from one right after the reload).  A carried
    # verdict would answer 503 for good (the checks are gone, and /health answers 500 anyway).
    assert [_status(proxy.url("/x")) for _ in range(3)] == [200, 200, 200]


PIDS_CGROUPS = "/sys/fs/cgroup/pids"


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.access(PIDS_CGROUPS, os.W_OK), reason="needs a writable cgroup v1 pids hierarchy")
def test_a_fork_the_system_refuses_is_retried_while_the_old_worker_serves_its_slot(proxy_factory, http_backend):
    """Review #1: a reload whose fork failed (a task limit: systemd's TasksMax) raised out of
    the commit: the master held the new config, the old generation was never retired, and the
    listening socket of the slot without a worker took its share of connections and answered
    none, for good.  Now the slot's old worker serves on and the fork is retried each second.

    The master runs in a pids cgroup of its own with room for itself and three workers: the
    reload's second new worker cannot fork until the first one's predecessor has exited."""
    group = os.path.join(PIDS_CGROUPS, f"mpm-test-{os.getpid()}")
    os.mkdir(group)
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False, workers=2)
    try:
        with open(os.path.join(group, "pids.max"), "w") as f:
            f.write("4")
        proxy.write_config()
        proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
        proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
        proxy.proc = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -m mpm start -c "$1"',
             sys.executable, proxy.config_path], stdout=proxy.stdout, stderr=proxy.stderr, cwd=ROOT)
        proxy.wait_ready()
        proxy.config["routes"][0]["timeout"] = 7          # any change: a new configuration
        proxy.write_config()
        result = proxy.reload()
        assert result.returncode == 0 and "reloaded: generation 2" in result.stdout, result
        statuses = [_status(proxy.url(f"/n{n}")) for n in range(40)]
        assert statuses == [200] * 40, statuses
        wait_for(lambda: {w["generation"] for w in proxy.status()["workers"]} == {2}
                 and len(proxy.status()["workers"]) == 2, 15, 0.2, "generation 2 whole, generation 1 gone")
        errors = proxy.error_text()
        assert "cannot start the worker of slot 1 (generation 2): fork failed" in errors, errors[-2000:]
        assert "reload failed" not in errors
        assert proxy.status()["mpm"]["workers"] == 2
        assert [_status(proxy.url(f"/m{n}")) for n in range(10)] == [200] * 10
    finally:
        if proxy.proc is not None:
            proxy.stop()
        wait_for(lambda: not open(os.path.join(group, "cgroup.procs")).read().strip(), 10, 0.1, "the group empty")
        os.rmdir(group)


@pytest.mark.timeout(60)
def test_a_reload_naming_another_file_is_refused_and_says_which_file_the_master_serves(proxy_factory,
                                                                                        http_backend):
    """Review #7: `mpmctl reload -c other.yaml` checked other.yaml, the master re-read its own
    file, and mpmctl said "reloaded": nothing of other.yaml was in effect."""
    one = http_backend(lambda request, body: (200, [], b"one"))
    two = http_backend(lambda request, body: (200, [], b"two"))
    proxy = proxy_factory([{"path": "/", "to": one.url + "/"}], workers=1)
    other = os.path.join(proxy.dir, "other.yaml")
    with open(proxy.config_path) as f:
        text = f.read()
    with open(other, "w") as f:
        f.write(text.replace(one.url, two.url))
    result = subprocess.run([sys.executable, "-m", "mpm", "reload", "-c", other], capture_output=True, text=True,
                            timeout=30, cwd=ROOT)
    assert result.returncode != 0, result
    assert f"this master serves {proxy.config_path}" in result.stderr and other in result.stderr, result.stderr
    assert proxy.status()["generation"] == 1
    with urllib.request.urlopen(proxy.url("/"), timeout=5) as response:
        assert response.read() == b"one"
    assert proxy.reload().returncode == 0            # its own file: as before


@pytest.mark.timeout(60)
def test_mpmctl_finds_the_master_after_its_control_paths_were_edited(proxy_factory, http_backend):
    """Review #4: with `control:` edited in the file, mpmctl looked only at the new paths and
    said "not running" (exit 3) for reload, status and stop, so the restart the master asks
    for ("they take effect at the next restart") could not be made with mpmctl.  It finds the
    master serving the file by its title now, and signals it."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    master = proxy.proc.pid
    moved = os.path.join(proxy.dir, "moved")
    proxy.config["control"] = {"pidfile": os.path.join(moved, "mpm.pid"), "socket": os.path.join(moved, "mpm.sock")}
    proxy.write_config()
    reload = proxy.reload()
    assert reload.returncode == 0 and "reload signalled" in reload.stdout, reload
    assert f"master pid {master} serves {proxy.config_path}" in reload.stderr, reload.stderr
    wait_for(lambda: "control paths changed: they take effect at the next restart" in proxy.error_text(), 10, 0.1,
             "the master's reload")
    # status needs the control socket: it says so, and does not claim to have signalled
    # anything (review 2026-12-04-readme F3).
    status = proxy.mpmctl("status")
    assert status.returncode == 1 and "`mpmctl status` needs the socket it listens on" in status.stderr, status
    assert "signalled" not in status.stderr
    stop = proxy.mpmctl("stop")
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop
    assert proxy.proc.wait(10) == 0


@pytest.mark.timeout(60)
def test_an_old_worker_keeps_the_graceful_timeout_it_started_with(proxy_factory, http_backend):
    """Review note: a reload that lowered mpm.graceful_timeout had the master SIGKILL the old
    generation by the *new* one, while those workers drain by the one they were started with
    (as nginx's old workers keep their cycle's worker_shutdown_timeout): a request they had
    been promised was cut.  Here 20 s becomes 1 s while an 8 s request is in flight."""
    def slow(request, body):
        if request["target"] == "/slow":
            time.sleep(8)
        return 200, [], b"done"
    proxy = proxy_factory([{"path": "/", "to": http_backend(slow).url + "/"}], workers=1)
    proxy.config["mpm"]["graceful_timeout"] = 20
    proxy.write_config()
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    with proxy.connect(timeout=30) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)                                   # in the generation-2 worker's hands
        proxy.config["mpm"]["graceful_timeout"] = 1
        proxy.write_config()
        assert proxy.reload().returncode == 0
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"done"), data


@pytest.mark.timeout(60)
def test_a_master_that_takes_the_reload_request_and_never_answers_is_not_reported_reloaded(proxy_factory,
                                                                                           http_backend):
    """Review #2: `mpmctl reload` to a master that had hung gave up after 30 s, sent SIGHUP
    (a second reload, queued) and said "reload signalled", exit 0.  A master that took the
    request and did not answer is reported so, exit 1, and is not signalled."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    os.kill(proxy.proc.pid, signal.SIGSTOP)         # its socket still takes the request
    try:
        result = proxy.mpmctl("reload", "--wait", "3", timeout=20)
    finally:
        os.kill(proxy.proc.pid, signal.SIGCONT)
    assert result.returncode == 1, result
    assert f"master pid {proxy.proc.pid} took the reload request but did not answer within 3 s" in result.stderr, \
        result.stderr
    status = wait_for(lambda: proxy.status(), 10, 0.1, "the master answering again")
    time.sleep(0.5)
    assert proxy.status()["generation"] == 2 == status["generation"], "one reload (the request's), not two"


@pytest.mark.timeout(60)
def test_a_reload_wait_that_is_no_positive_number_is_refused_before_anything_is_asked(proxy_factory, http_backend):
    """`--wait 0` made the request's socket non-blocking: no answer could be read, so mpmctl took
    the master for one without a control socket and sent a SIGHUP after the request (two reloads)."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    for wait in ("0", "-1", "soon"):
        result = proxy.mpmctl("reload", "--wait", wait)
        assert result.returncode == 2 and f"argument --wait: '{wait}' is not a number of seconds above 0" \
            in result.stderr, result
    time.sleep(0.3)
    assert proxy.status()["generation"] == 1
    result = proxy.mpmctl("reload", "--wait", "5")
    assert result.returncode == 0 and "reloaded: generation 2" in result.stdout, result
