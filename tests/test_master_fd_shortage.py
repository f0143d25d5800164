"""The master out of file descriptors while clients flood its admin listener: accepting pauses
(the connection stays queued, so retrying at once would spin the loop and log a line per turn),
the error log says so once per pause, and the listener answers again by itself once
descriptors are back.  The control socket backs off the same way (mpm.control)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import psutil
from admin_util import admin_port, admin_section, get
from support import wait_for


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
