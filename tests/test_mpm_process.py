"""The process model (issue #2): respawn, reload generations, stop, master death, status."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import yaml
from support import ROOT, free_port, wait_for


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def keepalive_get(sock: socket.socket, path: str = "/") -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def _worker_titles(master: psutil.Process) -> list[int]:
    """The master's children that run a worker already (its title is set as it starts)."""
    pids = []
    for child in master.children():
        try:
            if "mpm: worker" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            pass      # gone meanwhile
    return pids


def children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.timeout(60)
def test_killed_worker_is_respawned_and_other_connections_survive(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2, timeouts={"keepalive": 60})
    status = proxy.status()
    # Open keep-alive connections until both workers hold some.
    conns = []
    by_worker: dict[int, list] = {}
    for _ in range(40):
        sock = proxy.connect()
        assert keepalive_get(sock) == 200
        conns.append(sock)
    time.sleep(0.7)   # let the scoreboard publish
    busy = {w["pid"]: w["connections"] for w in proxy.status()["workers"]}
    assert all(n > 0 for n in busy.values()), busy
    victim = status["workers"][0]["pid"]
    survivor = status["workers"][1]["pid"]
    for sock in conns:   # find which worker serves each connection via the fd owner
        for pid in (victim, survivor):
            port = sock.getsockname()[1]
            if any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections("tcp")):
                by_worker.setdefault(pid, []).append(sock)
    master = psutil.Process(proxy.proc.pid)
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    # Respawned within a second (the README's promise), watched through /proc: each `mpmctl
    # status` is a Python start of its own (~0.2 s, over 1 s on a loaded machine), so it says
    # when the worker is ready, not how soon it came.  (~10 ms here: the master forks in its
    # SIGCHLD handler, and the child has the worker's modules already.)
    wait_for(lambda: [pid for pid in _worker_titles(master) if pid not in (victim, survivor)], 5, 0.005,
             "the new worker running")
    assert time.monotonic() - started < 1.0
    new = wait_for(lambda: [w for w in (proxy.status() or {"workers": []})["workers"]
                            if w["pid"] not in (victim, survivor) and w["state"] == "ready"], 5, 0.05, "respawn")
    assert new[0]["slot"] == status["workers"][0]["slot"]
    # The survivor's connections were untouched: each still answers on the same socket.
    for sock in by_worker[survivor]:
        assert keepalive_get(sock) == 200
    for sock in conns:
        sock.close()
    assert get(proxy.port)[0] == 200
    assert "died by signal 9" in proxy.error_text()


@pytest.mark.timeout(90)
def test_twenty_reloads_in_ten_seconds_keep_serving(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2, mpm={"graceful_timeout": 5})
    master = psutil.Process(proxy.proc.pid)
    baseline_fds = master.num_fds()
    failures: list = []
    served = [0]
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                status, _ = get(proxy.port)
                if status != 200:
                    failures.append(status)
                served[0] += 1
            except OSError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    start = time.monotonic()
    for _ in range(20):
        os.kill(proxy.proc.pid, signal.SIGHUP)   # mpmctl's own start-up would eat the 10 s
        time.sleep(0.45)
    elapsed = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join(10)
    assert elapsed < 10
    assert failures == [], failures[:5]
    assert served[0] > 20
    status = proxy.wait_ready(generation=21)
    # Old generations exit (idle ones at once), and none is left as a zombie.
    wait_for(lambda: all(w["generation"] == 21 for w in proxy.status()["workers"]), 10, 0.1, "old workers exit")
    wait_for(lambda: len(children(proxy.proc.pid)) == 2, 10, 0.1, "exactly the current workers as children")
    assert not [p for p in children(proxy.proc.pid) if p.status() == psutil.STATUS_ZOMBIE]
    assert master.num_fds() <= baseline_fds
    assert status["generation"] == 21


@pytest.mark.timeout(60)
def test_broken_config_on_reload_keeps_the_old_one(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    before = proxy.status()
    proxy.config["mpm"]["workerz"] = 3
    proxy.write_config()
    result = proxy.reload()
    assert result.returncode == 1
    assert f"{proxy.config_path}:" in result.stderr and "workerz" in result.stderr
    # A SIGHUP with the same broken file is refused by the master itself, logged with FILE:LINE.
    os.kill(proxy.proc.pid, signal.SIGHUP)
    wait_for(lambda: "reload refused" in proxy.error_text(), 5, 0.05, "refusal logged")
    assert f"{proxy.config_path}:" in proxy.error_text()
    # Its level in lower case, as the workers' lines and Apache's have it: one grep finds both.
    refusal = next(line for line in proxy.error_text().splitlines() if "reload refused" in line)
    assert f"] [error] [master pid {proxy.proc.pid}] " in refusal, refusal
    after = proxy.status()
    assert after["generation"] == before["generation"]
    assert sorted(w["pid"] for w in after["workers"]) == sorted(w["pid"] for w in before["workers"])
    assert get(proxy.port)[0] == 200


BROKEN_CONFIGS = [
    ("listn: ['127.0.0.1:8000']\n", 1, "did you mean 'listen'"),
    ("listen: ['127.0.0.1:99999']\nroutes: []\n", 1, "port"),
    ("listen: ['nonsense']\n", 1, ""),
    ("listen: ['127.0.0.1:8000', '127.0.0.1:8000']\n", 1, "duplicate"),
    ("listen: ['127.0.0.1:8000']\nmpm: {workers: 8, server_limit: 4}\n", 2, "server_limit"),
    ("listen: ['127.0.0.1:8000']\nmpm: {workers: two}\n", 2, ""),
    ("listen: ['127.0.0.1:8000']\nroutes:\n  - {path: /, to: 'ftp://127.0.0.1/'}\n", 3, "scheme"),
    ("listen: ['127.0.0.1:8000']\nroutes:\n  - {match: '^/(a', to: 'http://127.0.0.1/'}\n", 3, ""),
    ("listen: ['127.0.0.1:8000']\nroutes:\n  - {match: '^/(a)$', to: 'http://127.0.0.1/$2'}\n", 3, "$2"),
    ("listen: ['127.0.0.1:8000']\nroutes:\n  - {path: /, to: 'balancer://nope/'}\n", 3, "nope"),
    ("listen:\n  - {address: '127.0.0.1:8443', tls: {cert: missing.pem, key: missing.key}}\n", 2, "missing.pem"),
    ("listen: ['127.0.0.1:8000'\n", 2, ""),
]


@pytest.mark.parametrize("text,line,words", BROKEN_CONFIGS)
def test_configtest_reports_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", str(path)],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 1
    assert "Syntax OK" not in result.stdout
    assert f"{path}:{line}: " in result.stderr, result.stderr
    assert words in result.stderr


def test_configtest_ok_and_embedded_default(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("listen: ['127.0.0.1:8000']\nroutes:\n  - {path: /, to: 'http://127.0.0.1:9/'}\n")
    result = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", str(path)],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert (result.returncode, result.stdout.strip()) == (0, "Syntax OK")
    result = subprocess.run([sys.executable, "-m", "mpm", "configtest"], capture_output=True, text=True,
                            timeout=30, cwd=str(tmp_path))
    assert (result.returncode, result.stdout.strip()) == (0, "Syntax OK")


@pytest.mark.timeout(60)
def test_stop_leaves_no_process_and_graceful_stop_finishes_exchanges(proxy_factory, http_backend):
    def slow(request, body):
        time.sleep(1.0)
        return 200, [], b"slow but complete"
    backend = http_backend(slow)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    pids = [proxy.proc.pid, *proxy.worker_pids()]
    result: list = []
    t = threading.Thread(target=lambda: result.append(get(proxy.port, "/slow")))
    t.start()
    wait_for(lambda: backend.requests, 5, 0.01, "request at the backend")
    stop = proxy.mpmctl("stop")
    t.join(10)
    assert stop.returncode == 0, stop.stderr
    assert result == [(200, b"slow but complete")]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert proxy.proc.wait(5) == 0
    assert not os.path.exists(os.path.join(proxy.dir, "run", "mpm.pid"))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    assert proxy.mpmctl("status").returncode != 0


@pytest.mark.timeout(30)
def test_workers_exit_when_the_master_is_killed(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    workers = proxy.worker_pids()
    os.kill(proxy.proc.pid, signal.SIGKILL)
    proxy.proc.wait(5)
    # The workers see EOF on the master's pipe at once; the bound leaves room for a loaded CI
    # machine (2.0 s was exceeded once with the whole suite on 2 cores: exiting, and init
    # reaping the orphans, both wait for a CPU).
    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in workers), 5.0, 0.02, "workers gone")


@pytest.mark.timeout(30)
def test_status_json_has_every_field(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    for _ in range(5):
        assert get(proxy.port)[0] == 200
    time.sleep(0.7)
    status = proxy.status()
    assert status["master_pid"] == proxy.proc.pid
    assert status["generation"] == 1
    assert status["config"] == proxy.config_path
    assert status["listeners"] == [f"127.0.0.1:{proxy.port}"]
    assert status["uptime"] > 0
    assert len(status["workers"]) == 2
    for w in status["workers"]:
        for key in ("pid", "generation", "state", "connections", "tunnels", "requests", "bytes_in",
                    "bytes_out", "rss", "cpu_seconds", "slot"):
            assert key in w
        assert w["rss"] > 1_000_000 and psutil.Process(w["pid"]).ppid() == proxy.proc.pid
    assert sum(w["requests"] for w in status["workers"]) == 5
    assert sum(w["bytes_out"] for w in status["workers"]) > 5 * len(b"hello")
    text = proxy.mpmctl("status")
    assert text.returncode == 0 and "generation 1" in text.stdout and "total" in text.stdout
    titles = {psutil.Process(w["pid"]).cmdline()[0] for w in status["workers"]}
    assert titles == {"mpm: worker gen 1 slot 0", "mpm: worker gen 1 slot 1"}
    assert psutil.Process(proxy.proc.pid).cmdline()[0] == f"mpm: master -c {proxy.config_path} gen 1"


@pytest.mark.timeout(30)
def test_second_start_refuses_and_stale_pidfile_is_replaced(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    second = subprocess.run([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path],
                            capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert second.returncode == 1 and "already running" in second.stderr
    assert get(proxy.port)[0] == 200
    proxy.stop()
    # A stale pidfile (a pid that is not running) does not stop a start.
    pidfile = os.path.join(proxy.dir, "run", "mpm.pid")
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(pidfile, "w") as f:
        f.write(f"{dead.pid}\n")
    proxy.start()
    assert get(proxy.port)[0] == 200
    assert int(open(pidfile).read()) == proxy.proc.pid


@pytest.mark.timeout(30)
def test_detached_start_and_stop(tmp_path, http_backend):
    backend = http_backend()
    port = free_port()
    config = tmp_path / "d.yaml"
    config.write_text(yaml.safe_dump({
        "listen": [f"127.0.0.1:{port}"], "mpm": {"workers": 1},
        "log": {"access": "off", "error": str(tmp_path / "error.log")},
        "routes": [{"path": "/", "to": backend.url + "/"}]}))
    started = subprocess.run([sys.executable, "-m", "mpm", "start", "-d", "-c", str(config)],
                             capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "run" / "mpm.pid").read_text())
    try:
        wait_for(lambda: _answers(port), 10, 0.05, "detached master serving")
        assert get(port)[0] == 200
    finally:
        stopped = subprocess.run([sys.executable, "-m", "mpm", "stop", "-c", str(config)],
                                 capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert stopped.returncode == 0, stopped.stderr
    # Detached, the master is init's child here; gone or a zombie awaiting init is stopped.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _answers(port: int) -> bool:
    try:
        return get(port, timeout=1)[0] == 200
    except OSError:
        return False


@pytest.mark.timeout(40)
def test_reload_adds_and_removes_listeners(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    extra = free_port()
    proxy.config["listen"].append(f"127.0.0.1:{extra}")
    proxy.write_config()
    assert proxy.reload().returncode == 0
    assert get(extra)[0] == 200 and get(proxy.port)[0] == 200
    proxy.config["listen"].remove(f"127.0.0.1:{proxy.port}")
    proxy.write_config()
    assert proxy.reload().returncode == 0
    wait_for(lambda: not _answers(proxy.port), 10, 0.1, "old listener closed")
    assert get(extra)[0] == 200


@pytest.mark.timeout(40)
def test_capacity_cap_queues_instead_of_refusing(proxy_factory, http_backend):
    """ThreadsPerChild: a worker full of requests in progress stops accepting; the next client
    waits in the backlog.  (Connections that hold no request are closed to make room
    instead: tests/test_overload.py.)"""
    release = threading.Event()

    def slow(request, body):
        if request["target"] == "/hold":
            release.wait(10)
        return 200, [], b"ok"
    backend = http_backend(slow)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          mpm={"threads_per_child": 2, "max_request_workers": 2, "server_limit": 1})
    held = [proxy.connect(), proxy.connect()]
    for sock in held:
        sock.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_for(lambda: len(backend.requests) >= 2, 5, 0.01, "both held at the backend")
    waiting = proxy.connect()          # TCP handshake completes in the backlog...
    waiting.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    waiting.settimeout(0.7)
    with pytest.raises(socket.timeout):
        waiting.recv(100)              # ...but nobody serves it while the worker is full
    release.set()
    held[0].recv(100)
    held[0].close()                    # a slot frees up: the queued client is served
    waiting.settimeout(5)
    assert waiting.recv(100).startswith(b"HTTP/1.1 200")
    waiting.close()
    held[1].close()
    # The master told the operator, as Apache does, once.
    wait_for(lambda: "server reached MaxRequestWorkers setting" in proxy.error_text(), 5, 0.05, "warning")
    assert proxy.error_text().count("reached MaxRequestWorkers") == 1


@pytest.mark.timeout(30)
def test_stop_now_cuts_in_flight_exchanges_at_once(proxy_factory, http_backend):
    """SIGINT/SIGQUIT (mpmctl stop --now): no waiting for slow exchanges."""
    def slow(request, body):
        time.sleep(5)
        return 200, [], b"too late"
    backend = http_backend(slow)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    pids = [proxy.proc.pid, *proxy.worker_pids()]
    sock = proxy.connect()
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_for(lambda: backend.requests, 5, 0.01, "request at the backend")
    started = time.monotonic()
    result = proxy.mpmctl("stop", "--now")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 3.5
    assert sock.recv(100) == b""       # cut, not answered
    sock.close()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
