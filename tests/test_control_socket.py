"""The control socket against clients that misbehave (review 2026-12-03-control): one that
never reads its answer, never sends, or opens connections until the master runs out of
descriptors costs the master's loop nothing; mpmctl still gets its answer at once."""

from __future__ import annotations

import concurrent.futures
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from proxyproc import Proxy
from support import ROOT

from mpm.control import read_answer, request


def _ask(path: str, payload: dict, timeout: float = 30.0) -> tuple[dict, float]:
    """(answer, seconds): a blocking connect, so a full backlog is waited for, not refused."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.settimeout(timeout)
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data), time.monotonic() - started


@pytest.fixture(scope="module")
def big_answers(tmp_path_factory):
    """A master whose `balancer` answer (1,000 members, ~330 KB) overflows a Unix socket's buffer."""
    members = [{"url": f"http://127.0.0.1:{20000 + i}", "route": f"r{i}"} for i in range(1000)]
    proxy = Proxy(tmp_path_factory.mktemp("control"), [{"path": "/", "to": "balancer://big/"}], workers=1,
                  balancers={"big": {"members": members}})
    proxy.start()
    yield proxy, os.path.join(proxy.dir, "run", "mpm.sock")
    proxy.stop()


@pytest.mark.timeout(60)
def test_clients_that_never_read_their_answer_do_not_hold_the_master(big_answers):
    """Each answer was sent with a blocking sendall and a 1 s timeout in the master's loop:
    10 such clients held a status request ~10 s (and mpmctl, finding the backlog full, none)."""
    proxy, path = big_answers
    answer, _ = _ask(path, {"cmd": "balancer"})
    assert len(answer["balancers"][0]["members"]) == 1000
    stuck = []
    for _ in range(10):
        sock = socket.socket(socket.AF_UNIX)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(path)
        sock.sendall(b'{"cmd": "balancer"}\n')
        stuck.append(sock)
    try:
        time.sleep(0.1)
        answer, took = _ask(path, {"cmd": "status"})
        assert answer["master_pid"] == proxy.proc.pid
        assert took < 2.5, f"status took {took:.1f} s behind clients that do not read"
        assert proxy.mpmctl("status", timeout=10).returncode == 0
    finally:
        for sock in stuck:
            sock.close()


def _silent_connections(path: str, count: int, within: float = 3.0) -> list[socket.socket]:
    """Up to `count` connections that send nothing (a full backlog is waited out, not failed)."""
    held, deadline = [], time.monotonic() + within
    while len(held) < count and time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        try:
            sock.connect(path)
            held.append(sock)
        except BlockingIOError:
            sock.close()
            time.sleep(0.002)
    return held


@pytest.mark.timeout(60)
def test_silent_clients_are_capped_and_expire_on_their_own(big_answers):
    """Silent connections went only when another client connected, and were not capped: 60 of
    them held 60 of the master's descriptors for as long as no one else came."""
    proxy, path = big_answers
    master = psutil.Process(proxy.proc.pid)
    base = master.num_fds()
    held = _silent_connections(path, 60)
    try:
        time.sleep(0.3)
        assert len(held) == 60
        assert master.num_fds() <= base + 16, f"{master.num_fds() - base} descriptors for 60 silent clients"
        assert _ask(path, {"cmd": "status"})[0]["master_pid"] == proxy.proc.pid, "a newcomer still gets in"
        time.sleep(5.0 + 0.5)                # CLIENT_TIMEOUT, and a housekeeping tick
        assert master.num_fds() <= base, "expired without another client arriving"
    finally:
        for sock in held:
            sock.close()


@pytest.mark.timeout(60)
def test_accept_out_of_descriptors_backs_off(big_answers):
    """accept() failing with EMFILE was retried at once: the master spun (66-74 % of a core)
    and wrote a traceback per turn (2.7 MB/s to its error log)."""
    proxy, path = big_answers
    master = psutil.Process(proxy.proc.pid)
    limits = resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, (master.num_fds() + 4, limits[1]))
    held = []
    try:
        held = _silent_connections(path, 40, within=1.0)
        cpu, logged = sum(master.cpu_times()[:2]), os.path.getsize(proxy.error_log)
        time.sleep(1.5)
        spent = sum(master.cpu_times()[:2]) - cpu
        grown = os.path.getsize(proxy.error_log) - logged
        assert spent < 0.3 and grown < 2000, f"{spent:.2f} s of CPU, {grown} bytes of log in 1.5 s"
    finally:
        resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, limits)
        for sock in held:
            sock.close()
    assert "cannot accept (Too many open files)" in proxy.error_text()
    assert _ask(path, {"cmd": "status"}, timeout=5)[0]["master_pid"] == proxy.proc.pid, "accepting again"


@pytest.fixture
def stranger():
    """A process that is not mpm, with "mpm" among its arguments, as a recycled pid may be."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "/var/log/mpm/error.log"])
    yield proc
    proc.kill()
    proc.wait()


def _stale_pidfile(proxy: Proxy, pid: int) -> None:
    os.makedirs(os.path.join(proxy.dir, "run"), exist_ok=True)
    with open(os.path.join(proxy.dir, "run", "mpm.pid"), "w") as f:
        f.write(f"{pid}\n")


@pytest.mark.timeout(60)
def test_a_stale_pidfile_naming_a_stranger_is_neither_signalled_nor_respected(proxy_factory, stranger):
    """pid_alive took any process with "mpm" in its command line for a master: `mpmctl stop`
    sent it SIGTERM, and `mpmctl start` refused to start ("already running")."""
    proxy = proxy_factory([{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1, start=False)
    proxy.write_config()
    _stale_pidfile(proxy, stranger.pid)
    stopped = proxy.mpmctl("stop", timeout=20)
    assert stopped.returncode == 3 and "not running" in stopped.stderr, stopped.stdout + stopped.stderr
    time.sleep(0.2)
    assert stranger.poll() is None, f"the stranger got signal {-stranger.returncode}"
    proxy.start()
    assert proxy.status()["master_pid"] == proxy.proc.pid


@pytest.mark.timeout(60)
def test_a_second_master_does_not_take_a_live_control_socket(big_answers, tmp_path):
    """Another config (its own pidfile) naming the same control socket: the second master
    unlinked the first's socket at its start, leaving the first unreachable by mpmctl.
    (Last in the module: on the parent it takes the shared path.)"""
    proxy, path = big_answers
    second = Proxy(tmp_path / "second", [{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1,
                   control={"pidfile": "run/second.pid", "socket": path})
    second.write_config()      # not second.start(): its readiness check would reach the first master
    try:
        started = subprocess.run([sys.executable, "-m", "mpm", "start", "-c", second.config_path],
                                 capture_output=True, text=True, timeout=10, cwd=ROOT)
    except subprocess.TimeoutExpired:       # (run() killed the master; its workers follow it)
        raise AssertionError("the second master started and served") from None
    assert started.returncode == 1
    assert f"another process answers on the control socket {path}" in second.error_text() + started.stderr
    assert _ask(path, {"cmd": "status"}, timeout=5)[0]["master_pid"] == proxy.proc.pid


@pytest.mark.timeout(30)
def test_stop_with_a_now_that_is_not_a_boolean_is_refused(proxy_factory):
    """`{"cmd": "stop", "now": "false"}` was an immediate stop (bool("false") is True)."""
    proxy = proxy_factory([{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1)
    path = os.path.join(proxy.dir, "run", "mpm.sock")
    answer, _ = _ask(path, {"cmd": "stop", "now": "false"}, timeout=5)
    assert answer == {"ok": False, "errors": ["'now' must be true or false, got \"false\""]}
    time.sleep(0.3)
    assert proxy.proc.poll() is None and "stop requested" not in proxy.error_text()


def test_mpmctl_help_names_every_verb():
    """`mpmctl --help` printed the first line of the module's summary only, which stops at
    "configtest, each with": the -c it announces and import-apache were cut off."""
    out = subprocess.run([sys.executable, "-m", "mpm", "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    summary = " ".join(out.split("positional arguments:")[0].split())
    assert "configtest, each with -c FILE; import-apache FILE" in summary
    assert "drain|disable|enable|hot-standby|weightN" in "".join(out.split())   # argparse wraps at "-"


def test_mpmctl_into_a_pipe_its_reader_left_prints_no_traceback(proxy_factory, http_backend):
    """`mpmctl status --json | head -1`: head leaves before the JSON is written."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}])
    for verb in (["status", "--json"], ["balancer", "--json"]):
        read, write = os.pipe()
        os.close(read)                                # the reader is gone before anything is written
        try:
            done = subprocess.run([sys.executable, "-m", "mpm", *verb, "-c", proxy.config_path], stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=30, cwd=ROOT)
        finally:
            os.close(write)
        assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
        assert done.returncode == 1


def test_a_burst_of_mpmctl_runs_all_get_their_answer(proxy_factory):
    """40 `mpmctl status` at once (monitoring agents, a fleet script): the control socket's
    backlog (16) fills for a moment, and a client connect waits for room, as a blocking connect
    does, instead of failing at once with EAGAIN (parent: about 17 of 40 "does not answer")."""
    proxy = proxy_factory([{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1)
    path = os.path.join(proxy.dir, "run", "mpm.sock")
    start = threading.Barrier(40)

    def ask(_) -> str:
        start.wait(5)
        try:
            return "ok" if request(path, {"cmd": "status"}, timeout=5)["ok"] else "refused"
        except OSError as exc:
            return repr(exc)
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(ask, range(40)))
    assert outcomes == ["ok"] * 40, {o: outcomes.count(o) for o in set(outcomes)}


@pytest.mark.timeout(60)
def test_a_client_slow_to_send_keeps_its_place_while_newcomers_wait(proxy_factory):
    """The cause of the burst test's failures (1 CI run in 6): with all 16 places taken, a
    newcomer replaced the oldest client at once, even one whose request the master had not read
    yet, and that client met a closed socket.  A place is now kept for REPLACE_GRACE (0.5 s);
    newcomers wait in the backlog meanwhile, and all are answered."""
    proxy = proxy_factory([{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1)
    path = os.path.join(proxy.dir, "run", "mpm.sock")
    slow = []
    for _ in range(16):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(path)
        slow.append(sock)
    try:
        time.sleep(0.1)                     # all 16 accepted
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            newcomers = [pool.submit(request, path, {"cmd": "status"}, 10) for _ in range(8)]
            time.sleep(0.2)                 # the newcomers are queued (or, before, took places)
            outcomes = []
            for sock in slow:
                try:
                    sock.sendall(b'{"cmd": "status"}\n')
                    outcomes.append("ok" if read_answer(sock).get("ok") else "refused")
                except (OSError, ValueError) as exc:
                    outcomes.append(repr(exc))
            assert outcomes == ["ok"] * 16, {o: outcomes.count(o) for o in set(outcomes)}
            assert all(future.result()["ok"] for future in newcomers)
    finally:
        for sock in slow:
            sock.close()
