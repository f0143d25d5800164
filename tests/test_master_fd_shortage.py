"""The master out of file descriptors.  While clients flood its admin listener, accepting pauses
(the connection stays queued, so retrying at once would spin the loop and log a line per turn),
the error log says so once per pause, and the listener answers again by itself once
descriptors are back (the control socket backs off the same way, mpm.control).  Health probes
that get no socket are skipped and said once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import psutil
import pytest
from admin_util import admin_port, admin_section, get
from rawbackend import RawBackend, serve_simple
from support import wait_for


@pytest.fixture
def raw_backend():
    backend = RawBackend(serve_simple)
    yield backend
    backend.close()


def _set_nofile(pid: int, soft: int) -> None:
    """The soft limit only: the hard one stays, so the old value can be put back."""
    hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)[1]
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:{hard}"], check=True, timeout=5)


def test_admin_listener_out_of_descriptors_backs_off_and_resumes(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, admin=admin_section())
    master = proxy.proc.pid
    port = admin_port(proxy)
    assert get(port, "/healthz")[0] == 200
    before = len(os.listdir(f"/proc/{master}/fd"))
    soft = psutil.Process(master).rlimit(psutil.RLIMIT_NOFILE)[0]
    _set_nofile(master, before + 2)              # room for two admin clients, then EMFILE
    flood = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(6)]
    try:
        wait_for(lambda: "admin listener" in proxy.error_text(), timeout=3, what="the shortage said")
        cpu = psutil.Process(master)
        used = sum(cpu.cpu_times()[:2])
        time.sleep(0.6)                          # a window to measure, not a synchronisation
        spent = sum(cpu.cpu_times()[:2]) - used
        assert spent < 0.2, f"master spun {spent:.2f} s of CPU in 0.6 s"
        said = proxy.error_text().count("admin listener")
        assert 1 <= said <= 2, said
    finally:
        for sock in flood:
            sock.close()
        _set_nofile(master, soft)
    wait_for(lambda: get(port, "/healthz", timeout=2)[0] == 200, timeout=4, what="the listener back")
    assert proxy.proc.poll() is None


def test_health_probes_without_a_socket_are_skipped_and_said_once(proxy_factory, raw_backend):
    """The master out of descriptors while a balancer's members are checked every 0.25 s: each
    probe that gets no socket is skipped (neither passed nor failed: the member is not what
    failed), said once per 10 s, and the rest of the housekeeping runs on."""
    health = {"method": "GET", "path": "/health", "expect": "^200$", "interval": 0.25, "passes": 1, "fails": 1,
              "timeout": 1}
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1,
                          balancers={"app": {"health": health, "members": [{"url": raw_backend.url, "route": "a"}]}})
    master = proxy.proc.pid
    wait_for(lambda: _member(proxy)["health"] == "up", timeout=4, what="the member checked up")
    soft = psutil.Process(master).rlimit(psutil.RLIMIT_NOFILE)[0]
    _set_nofile(master, _steady_fds(master))       # not one descriptor left
    try:
        wait_for(lambda: "health checks" in proxy.error_text() or "carrying on" in proxy.error_text(),
                 timeout=3, what="the shortage met")
        time.sleep(0.8)                          # three more probes due: a window, not a synchronisation
        text = proxy.error_text()
        # (parent: "master: Master._housekeeping failed; carrying on" and a traceback per probe due)
        assert "carrying on" not in text, text[-800:]
        assert text.count("health checks: no socket for a probe (Too many open files)") == 1, text[-800:]
    finally:
        _set_nofile(master, soft)
    assert _member(proxy)["health"] == "up"


def _steady_fds(pid: int) -> int:
    """The descriptors `pid` holds between two probes: the fewest seen over one probe interval
    and more (one count taken while a probe's socket was open left room for the next probes, and
    no shortage came: seen once in CI)."""
    counts = []
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:
        counts.append(len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(0.01)
    return min(counts)


def _member(proxy) -> dict:
    listing = json.loads(proxy.mpmctl("balancer", "--json").stdout)
    return listing["balancers"][0]["members"][0]
