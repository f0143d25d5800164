"""`mpmctl reload` says "reloaded" once the new configuration is the only one taking new
connections (mpm.settling): every worker of the new generation serves and none of an earlier
one accepts.  Before, the answer came right after the fork, and a request sent just after it
could still meet an old worker (review 2026-12-03-reload #4's three 503s under CI load).

An old worker is held back with SIGSTOP: its SIGTERM waits, and it keeps its place in its slot's
listening socket, as a busy or slow worker would for a moment.  Real master, workers, backends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest
from proxyproc import ROOT
from support import wait_for

from mpm.pidfile import read_pid


def _body(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read()


def _backend(http_backend, name: bytes):
    return http_backend(lambda request, body: (200, [("Content-Type", "text/plain")], name))


def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):       # (resumed once already, and gone since)
        os.kill(pid, signal.SIGCONT)


def _reload_in_background(proxy, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mpm", "reload", "-c", proxy.config_path, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _held_reload(proxy, *args) -> tuple[int, subprocess.Popen]:
    """`mpmctl reload` with the old worker stopped (SIGSTOP): (its pid, the reload), once the
    master has committed the reload and holds its answer."""
    [old_worker] = proxy.worker_pids()
    os.kill(old_worker, signal.SIGSTOP)
    try:
        reload = _reload_in_background(proxy, *args)
        wait_for(lambda: (proxy.status() or {}).get("generation") == 2, 10, 0.05, "the reload committed")
    except BaseException:
        _resume(old_worker)
        raise
    return old_worker, reload


@pytest.mark.timeout(60)
def test_a_reload_answers_once_no_old_worker_takes_new_connections(proxy_factory, http_backend):
    old_backend, new_backend = _backend(http_backend, b"old"), _backend(http_backend, b"new")
    proxy = proxy_factory([{"path": "/", "to": old_backend.url + "/"}], workers=1)
    assert _body(proxy.url("/x")) == b"old"
    proxy.config["routes"] = [{"path": "/", "to": new_backend.url + "/"}]
    proxy.write_config()
    # The master's loop is not held by the answer that waits: it commits, and says so (status).
    old_worker, reload = _held_reload(proxy)
    try:
        time.sleep(0.5)                  # the new worker comes up meanwhile
        assert reload.poll() is None, f"answered while the old worker still held its place: {reload.communicate()}"
    finally:
        _resume(old_worker)
    out, err = reload.communicate(timeout=15)
    assert reload.returncode == 0 and out.strip() == "reloaded: generation 2", (out, err)
    assert err == "", err
    answers = [_body(proxy.url(f"/after-{i}")) for i in range(20)]
    assert answers == [b"new"] * 20, answers
    rows = [w for w in proxy.status()["workers"] if w["generation"] == 1]
    assert all(w["state"] not in ("starting", "ready", "full") for w in rows), rows


@pytest.mark.timeout(60)
def test_an_old_worker_that_never_lets_go_delays_the_answer_only_until_the_wait_with_a_warning(proxy_factory,
                                                                                             http_backend):
    """An old worker that does not stop accepting (stopped here; stuck, in life) must not hold
    `mpmctl reload` past its --wait: the reload is done, and the answer says who lagged."""
    proxy = proxy_factory([{"path": "/", "to": _backend(http_backend, b"one").url + "/"}], workers=1)
    [old_worker] = proxy.worker_pids()
    os.kill(old_worker, signal.SIGSTOP)
    try:
        reload = _reload_in_background(proxy, "--wait", "3")
        out, err = reload.communicate(timeout=15)
    finally:
        _resume(old_worker)
    # Exit 0: answered within the 3 s it waits (else "did not answer within 3 s", exit 1).
    assert reload.returncode == 0 and "reloaded: generation 2" in out, (out, err)
    assert f"pid {old_worker} of an earlier generation still takes new connections" in err, err
    wait_for(lambda: all(w["state"] not in ("starting", "ready", "full")
                         for w in proxy.status()["workers"] if w["generation"] == 1), 10, 0.1,
             "the old worker letting go once it runs again")


@pytest.mark.timeout(60)
def test_a_reload_client_that_hangs_up_before_its_answer_costs_nothing(proxy_factory, http_backend):
    """The held request's client goes away (a service manager's timeout): the master drops it,
    answers the next reload, and makes one reload of each request, not two."""
    proxy = proxy_factory([{"path": "/", "to": _backend(http_backend, b"one").url + "/"}], workers=1)
    old_worker, reload = _held_reload(proxy)
    try:
        reload.kill()
        reload.wait(5)
    finally:
        _resume(old_worker)
    proxy.wait_ready(generation=2)
    result = proxy.reload()
    assert result.returncode == 0 and result.stdout.strip() == "reloaded: generation 3", result
    assert proxy.status()["generation"] == 3


@pytest.mark.timeout(60)
def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(proxy_factory, http_backend):
    """`socat` and `nc -N` end their side once the request is sent, and read the answer: the
    end of their side is not a hang-up."""
    proxy = proxy_factory([{"path": "/", "to": _backend(http_backend, b"one").url + "/"}], workers=1)
    [old_worker] = proxy.worker_pids()
    os.kill(old_worker, signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(15)
            sock.connect(proxy.control_socket)
            sock.sendall(json.dumps({"cmd": "reload", "config": os.path.realpath(proxy.config_path)}).encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            wait_for(lambda: (proxy.status() or {}).get("generation") == 2, 10, 0.05, "the reload committed")
            time.sleep(0.3)              # the master has seen the end of our side by now
            _resume(old_worker)
            answer = json.loads(read_all(sock))
    finally:
        _resume(old_worker)
    assert answer == {"ok": True, "errors": [], "generation": 2}, answer


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _ask(path: str, request: dict, timeout: float = 15) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(read_all(sock))


@pytest.mark.timeout(60)
def test_a_wait_of_any_shape_is_taken_or_ignored_never_an_internal_error(proxy_factory, http_backend):
    """Review 2026-12-05-settle #4: `"wait": 10**400` raised OverflowError after the reload had
    committed, and the answer said "internal error"."""
    proxy = proxy_factory([{"path": "/", "to": _backend(http_backend, b"one").url + "/"}], workers=1)
    config = os.path.realpath(proxy.config_path)
    for generation, wait in enumerate((10**400, "5", True, -1, None, float("inf"), 0.5), start=2):
        payload = json.dumps({"cmd": "reload", "config": config}).encode()[:-1] + b', "wait": ' + \
            (b"1" + b"0" * 400 if wait == 10**400 else json.dumps(wait).encode().replace(b"Infinity", b"1e999")) + b"}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(15)
            sock.connect(proxy.control_socket)
            sock.sendall(payload + b"\n")
            answer = json.loads(read_all(sock))
        assert answer["ok"] and answer["generation"] == generation, (wait, answer)


@pytest.mark.timeout(60)
def test_past_four_held_answers_a_reload_is_answered_at_once(proxy_factory, http_backend):
    """Each held answer takes one of the control socket's 16 places (review #3: 16 held reloads
    kept `mpmctl status` and `stop` out for 7 s): the fifth is answered at once, and says so,
    and `status` still gets in."""
    proxy = proxy_factory([{"path": "/", "to": _backend(http_backend, b"one").url + "/"}], workers=1)
    [old_worker] = proxy.worker_pids()
    request = {"cmd": "reload", "config": os.path.realpath(proxy.config_path)}
    os.kill(old_worker, signal.SIGSTOP)
    held = []
    try:
        for generation in range(2, 6):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(sock)
            sock.settimeout(15)
            sock.connect(proxy.control_socket)
            sock.sendall(json.dumps(request).encode() + b"\n")
            wait_for(lambda g=generation: (proxy.status() or {}).get("generation") == g, 10, 0.05, "the reload")
        fifth = _ask(proxy.control_socket, request, timeout=5)
        assert fifth["ok"] and fifth["generation"] == 6, fifth
        assert fifth["warnings"] == ["not waited for: 4 reload answers wait already"], fifth
        _resume(old_worker)
        answers = [json.loads(read_all(sock)) for sock in held]
    finally:
        _resume(old_worker)
        for sock in held:
            sock.close()
    assert [a["generation"] for a in answers] == [2, 3, 4, 5] and all(a["ok"] for a in answers), answers


@pytest.mark.timeout(90)
def test_an_upgrade_that_takes_the_control_socket_answers_the_reload_it_held(proxy_factory, http_backend):
    """Review #2: the hand-over closed the control socket with a reload held, and its `mpmctl`
    fell back to a SIGHUP to the master that was leaving."""
    proxy = proxy_factory([{"path": "/", "to": _backend(http_backend, b"one").url + "/"}], workers=1)
    old_worker, reload = _held_reload(proxy)
    new_master = None
    try:
        upgrade = proxy.mpmctl("upgrade", timeout=60)
        out, err = reload.communicate(timeout=30)
        _resume(old_worker)
        new_master = read_pid(os.path.join(proxy.dir, "run", "mpm.pid"))
        assert proxy.proc.wait(20) == 0 and new_master not in (None, proxy.proc.pid), new_master
    finally:
        _resume(old_worker)
        if new_master not in (None, proxy.proc.pid):     # the upgrade's master, not the test's: stopped here
            os.kill(new_master, signal.SIGINT)
            wait_for(lambda: not psutil.pid_exists(new_master), 20, 0.1, "the new master to stop")
    assert upgrade.returncode == 0, upgrade
    assert reload.returncode == 0 and out.strip() == "reloaded: generation 2", (out, err)
    assert "the master handed its control socket over (mpmctl upgrade)" in err, err
