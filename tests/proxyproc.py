"""A real proxy under test: `python -m mpm start -c FILE` on a free port, driven through
`mpmctl`, and the ways tests read what it did (status, error log, access log).

`status()` asks the master's control socket from the test process, as `mpmctl status
--json` does and with the same answer, without a Python start per call: a readiness check
polls it every 50 ms, and each `mpmctl` run costs about 0.3 s of CPU (its interpreter, its
imports and the config file): the suite's summed test time went from 2,084 to 1,491 s with
this, its wall time on two cores from 17:40 to 12:42 (2026-12-05).
`mpmctl status` itself is run by the tests of the CLI (test_mpm_process.py, ...).

Everything started is stopped by `Proxy.stop()`, which also checks that no master or
worker process outlived the stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import psutil
import yaml
from support import ROOT, free_port, terminate, wait_for

from mpm import control


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _ask_status(path: str) -> dict:
    """`mpm.control.request(path, {"cmd": "status"})`, returning once the master has closed its
    end too (it does as soon as the answer is sent): as after mpmctl's exit, a test that counts
    the master's descriptors next never counts this connection (it did once in a CI run)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 10, 0))   # (see request)
        sock.connect(path)
        sock.settimeout(10)
        sock.sendall(b'{"cmd": "status"}\n')
        answer = control.read_answer(sock)
        sock.recv(1)
        return answer


class Proxy:
    """A real mpm master and its workers, driven through `mpmctl`."""

    def __init__(self, directory, routes, workers: int = 2, environ: dict | None = None, **sections):
        self.dir = str(directory)
        self.environ = None if environ is None else {**os.environ, **environ}   # the master's and workers' own
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.config_path = os.path.join(self.dir, "mpm.yaml")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.config = _merge({
            "listen": [f"127.0.0.1:{self.port}"],
            "mpm": {"workers": workers, "server_limit": 16, "graceful_timeout": 10},
            "timeouts": {"connect": 2, "proxy": 10, "client_header": 5, "keepalive": 5},
            "control": {"pidfile": "run/mpm.pid", "socket": "run/mpm.sock"},
            "log": {"level": "info", "access": self.access_log, "error": self.error_log},
            "routes": routes,
        }, sections)
        self.proc: subprocess.Popen | None = None
        self.seen_pids: set[int] = set()
        self.started_socket: str | None = None      # the control socket start() started the master with

    @property
    def control_socket(self) -> str:
        """The control socket the config names (relative paths are the config file's)."""
        return os.path.join(self.dir, self.config["control"]["socket"])

    def write_config(self, config: dict | None = None) -> None:
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config or self.config, f, sort_keys=False)

    def mpmctl(self, *args, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mpm", *args, "-c", self.config_path],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def start(self) -> Proxy:
        self.write_config()
        self.stdout = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", self.config_path],
                                     stdout=self.stdout, stderr=self.stderr, cwd=ROOT, env=self.environ)
        self.seen_pids.add(self.proc.pid)
        self.started_socket = self.control_socket
        self.wait_ready()
        return self

    def wait_ready(self, generation: int | None = None, timeout: float = 15.0) -> dict:
        workers = self.config["mpm"]["workers"]

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"master exited with {self.proc.returncode}: {self.stderr_text()}")
            status = self.status()
            if status is None:
                return None
            current = [w for w in status["workers"] if w["generation"] == status["generation"]
                       and w["state"] == "ready"]
            if generation is not None and status["generation"] != generation:
                return None
            if len(current) == workers:
                self.seen_pids.update(w["pid"] for w in status["workers"])
                return status
            return None
        return wait_for(ready, timeout, 0.05, "workers ready")

    def status(self) -> dict | None:
        """The master's status answer (what `mpmctl status --json` prints), None where it
        does not answer.  Asked on the socket the master was started with: a test that edits
        `control:` meets the rule that new control paths wait for a restart."""
        try:
            status = _ask_status(self.started_socket or self.control_socket)
        except (OSError, ValueError):
            return None
        self.seen_pids.update(w["pid"] for w in status["workers"])
        return status

    def worker_pids(self, current_only: bool = True) -> list[int]:
        status = self.status()
        return [w["pid"] for w in status["workers"]
                if not current_only or w["generation"] == status["generation"]]

    def reload(self) -> subprocess.CompletedProcess:
        return self.mpmctl("reload")

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def connect(self, timeout: float = 5.0, source: str | None = None) -> socket.socket:
        """`source`: a loopback address to connect from (127.0.0.2, ...): a distinct client."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        return sock

    def stderr_text(self) -> str:
        with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def error_text(self) -> str:
        try:
            with open(self.error_log, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def access_lines(self) -> list[str]:
        try:
            with open(self.access_log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc, 20)
        for pid in self.seen_pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    os.kill(pid, signal.SIGKILL)
                    raise AssertionError(f"process {pid} outlived the master's stop")
            except psutil.NoSuchProcess:
                pass
        self.stdout.close()
        self.stderr.close()
        self.proc = None


@contextlib.contextmanager
def running_proxy(directory, routes, **sections):
    """A real master for a whole module (starting one costs about a second)."""
    proxy = Proxy(directory, routes, **sections)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


def raw_exchange(proxy: Proxy, data: bytes, timeout: float = 5.0, until_close: bool = True) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes (or times out)."""
    with proxy.connect(timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not until_close:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def wait_log(proxy: Proxy, needle: str, timeout: float = 3.0) -> str:
    """The error log once it contains `needle` (logs are flushed once per loop turn)."""
    deadline = time.monotonic() + timeout
    while True:
        text = proxy.error_text()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def wait_access(proxy: Proxy, marker: str, count: int = 1, timeout: float = 3.0) -> list[str]:
    """Access-log lines containing `marker`, once there are `count` of them (or the timeout ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in proxy.access_lines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def tunnel_lines(proxy: Proxy, marker: str) -> list[str]:
    """Access-log lines of requests whose target contains `marker`."""
    return [line for line in proxy.access_lines() if marker in line]


def total_tunnels(proxy: Proxy) -> int:
    """Open tunnels over every worker, from the scoreboard."""
    status = proxy.status()
    return sum(w["tunnels"] for w in status["workers"])
