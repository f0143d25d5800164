"""systemd (issue #14): sd_notify to a real AF_UNIX datagram socket across start, reload, stop
and `mpmctl upgrade`; socket activation with listeners passed by fd (LISTEN_FDS/LISTEN_PID)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import psutil
import pytest
from admin_util import admin_port, admin_section, get, scrape, value
from rawsock import recv_until_eof
from support import ROOT, wait_for


class NotifySocket:
    """What systemd listens on: one datagram per sd_notify call, newline-separated fields."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.address = address
        self.messages: list[list[str]] = []

    def drain(self) -> list[list[str]]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return self.messages

    def events(self) -> list[str]:
        """The state changes in order (STATUS= lines left out)."""
        return [field for message in self.drain() for field in message
                if field.split("=")[0] in ("READY", "RELOADING", "STOPPING", "MAINPID")]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    sockets = []

    def make(address: str | None = None) -> NotifySocket:
        sock = NotifySocket(address or str(tmp_path / "notify.sock"))
        sockets.append(sock)
        return sock
    yield make
    for sock in sockets:
        sock.close()


def _get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return recv_until_eof(sock)


def test_ready_reloading_ready_stopping_in_order(proxy_factory, http_backend, notify_socket):
    backend = http_backend()
    notify = notify_socket()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], environ={"NOTIFY_SOCKET": notify.address})
    wait_for(lambda: "READY=1" in notify.events(), 5, 0.05, "READY=1")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert proxy.reload().returncode == 0
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    wait_for(lambda: notify.events().count("READY=1") == 2, 10, 0.05, "READY=1 after the reload")
    proxy.stop()
    assert notify.events() == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    reloading = next(m for m in notify.messages if "RELOADING=1" in m)
    usec = int(next(field for field in reloading if field.startswith("MONOTONIC_USEC="))[len("MONOTONIC_USEC="):])
    assert before <= usec <= after
    statuses = [field for message in notify.messages for field in message if field.startswith("STATUS=")]
    assert any("generation 1: 2/2 workers serving" in s for s in statuses)
    assert any("generation 2: 2/2 workers serving" in s for s in statuses)


def test_a_refused_reload_is_answered_with_ready_at_once(proxy_factory, http_backend, notify_socket):
    backend = http_backend()
    notify = notify_socket()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], environ={"NOTIFY_SOCKET": notify.address})
    wait_for(lambda: "READY=1" in notify.events(), 5, 0.05, "READY=1")
    proxy.write_config({**proxy.config, "routes": [{"path": "/", "to": "gopher://x/"}]})
    proxy.proc.send_signal(1)          # SIGHUP: mpmctl would refuse the file before asking
    wait_for(lambda: notify.events() == ["READY=1", "RELOADING=1", "READY=1"], 5, 0.05, "RELOADING, READY")
    assert any("STATUS=reload refused" in field for message in notify.messages for field in message)
    assert _get(proxy.port).startswith(b"HTTP/1.1 200")


@pytest.mark.timeout(120)
def test_mainpid_follows_mpmctl_upgrade_and_the_totals_too(proxy_factory, http_backend, notify_socket):
    backend = http_backend()
    notify = notify_socket(f"@mpm-test-notify-{os.getpid()}")      # the abstract namespace, as systemd's own
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section(),
                          environ={"NOTIFY_SOCKET": notify.address})
    for _ in range(3):
        assert _get(proxy.port).startswith(b"HTTP/1.1 200")
    before = scrape(proxy)
    old_master = proxy.proc.pid
    new_master = None
    try:
        result = proxy.mpmctl("upgrade", timeout=90)
        assert result.returncode == 0, result.stderr + result.stdout
        new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
        assert new_master != old_master
        assert proxy.proc.wait(10) == 0
        wait_for(lambda: f"MAINPID={new_master}" in notify.events(), 5, 0.05, "MAINPID=<new master>")
        events = notify.events()
        assert "STOPPING=1" not in events             # the service goes on in the new master
        after = scrape(proxy)                         # the admin socket went with the upgrade
        assert value(after, "mpm_generation") == 2
        # the master's CPU: a series per master (pid), as the workers' have, so none goes backwards
        assert _master_cpu_pids(before) == {str(old_master)} and _master_cpu_pids(after) == {str(new_master)}
        assert value(after, "mpm_master_start_time_seconds") > value(before, "mpm_master_start_time_seconds")
        assert value(after, "mpm_requests_total") == value(before, "mpm_requests_total") == 3
        assert value(after, "mpm_request_duration_seconds_count") == 3
        assert _get(proxy.port).startswith(b"HTTP/1.1 200")
        wait_for(lambda: value(scrape(proxy), "mpm_requests_total") == 4, 5, 0.1, "the new generation counting on")
    finally:
        if new_master is not None and new_master != old_master:
            proxy.mpmctl("stop")
            wait_for(lambda: not psutil.pid_exists(new_master) or
                     psutil.Process(new_master).status() == psutil.STATUS_ZOMBIE, 20, 0.1, "new master stops")
    assert notify.events()[-1] == "STOPPING=1"


def _master_cpu_pids(samples: dict) -> set:
    return {dict(labels).get("pid") for name, labels in samples if name == "mpm_master_cpu_seconds_total"}


# A stand-in for systemd's exec: the sockets to fd 3, 4, ... and LISTEN_PID = the pid that runs mpm.
_ACTIVATE = """
import fcntl, os, sys
passed = [int(fd) for fd in sys.argv[1].split(",")]
fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in passed]
for fd in passed:
    os.close(fd)
for i, fd in enumerate(fds):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _listening(port: int) -> int:
    """How many sockets listen on 127.0.0.1:`port` (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        return sum(1 for line in f.readlines()[1:]
                   if int(line.split()[1].split(":")[1], 16) == port and line.split()[3] == "0A")


def _passed_socket(reuseport: bool) -> socket.socket:
    sock = socket.socket()
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.mark.parametrize("reuseport", [False, True], ids=["shared", "reuseport"])
def test_socket_activation_uses_the_listeners_passed_by_fd(proxy_factory, http_backend, reuseport):
    backend = http_backend()
    data, admin = _passed_socket(reuseport), _passed_socket(False)
    port, aport = data.getsockname()[1], admin.getsockname()[1]
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, admin={"listen": f"127.0.0.1:{aport}"})
    proxy.port = port
    proxy.config["listen"] = [f"127.0.0.1:{port}"]
    proxy.write_config()
    proxy.stdout = open(os.path.join(proxy.dir, "stdout.log"), "wb")
    proxy.stderr = open(os.path.join(proxy.dir, "stderr.log"), "wb")
    proxy.proc = subprocess.Popen(
        [sys.executable, "-c", _ACTIVATE, f"{data.fileno()},{admin.fileno()}", "-m", "mpm", "start",
         "-c", proxy.config_path], pass_fds=(data.fileno(), admin.fileno()), cwd=ROOT,
        stdout=proxy.stdout, stderr=proxy.stderr)
    proxy.seen_pids.add(proxy.proc.pid)
    data.close()                      # the master holds them now, as it would systemd's
    admin.close()
    proxy.wait_ready()
    for _ in range(4):
        assert _get(port).startswith(b"HTTP/1.1 200")
    assert get(admin_port(proxy), "/healthz")[0] == 200
    # without SO_REUSEPORT the master could not have bound a socket of its own there: one socket,
    # shared by both workers; with it, slot 0 takes the passed socket and slot 1 binds beside it
    assert _listening(port) == (2 if reuseport else 1)
    assert _listening(aport) == 1
    worker_fds = [{os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
                  for pid in proxy.worker_pids()]
    master_fd3 = os.readlink(f"/proc/{proxy.proc.pid}/fd/3")
    assert all(master_fd3 in fds for fds in worker_fds) != reuseport
    assert proxy.reload().returncode == 0       # the passed sockets stay across a reload
    proxy.wait_ready(generation=2)
    assert _get(port).startswith(b"HTTP/1.1 200") and _listening(port) == (2 if reuseport else 1)


def test_the_shipped_unit_file_is_valid_for_systemd(tmp_path):
    """conf/systemd/mpm-proxy.service parses (`systemd-analyze verify`, with mpmctl's path made real)
    and says what the README says: Type=notify, mpmctl reload, a stop timeout past graceful_timeout."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    with open(os.path.join(ROOT, "conf", "systemd", "mpm-proxy.service")) as f:
        text = f.read()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "all"
    assert settings["ExecReload"].split()[1] == "reload" and settings["ExecStart"].split()[1] == "start"
    assert int(settings["TimeoutStopSec"]) > 30 + 5 and settings["KillMode"] == "mixed"
    unit = tmp_path / "mpm-proxy.service"
    unit.write_text(text.replace("/usr/local/bin/mpmctl", shutil.which("true")))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "mpm-proxy.service" not in result.stderr, result.stderr
