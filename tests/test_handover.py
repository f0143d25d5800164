"""Reload without dropping a single WebSocket (issue #8): tunnels move to the new generation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import ROOT, wait_for


@pytest.fixture
def echo_backend(tmp_path):
    """The bundled backend (its own processes, raw epoll): a WebSocket echo at /ws."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.backends", "--host", "127.0.0.1", "--port", "0",
                             "--processes", "2"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on http://"), line
    yield line.rsplit(" ", 1)[-1]
    proc.terminate()
    proc.wait(10)


class Streamer:
    def __init__(self, port: int, connections: int, rate: float):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "streamer.py"), str(port),
                                      str(connections), str(rate)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def finish(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _fds(pids) -> int:
    return sum(psutil.Process(pid).num_fds() for pid in pids)


def _pauses(proxy) -> list[float]:
    """The p99 hand-over pause each receiving worker logged, in ms."""
    return [float(m) for m in re.findall(r"adopted \d+ tunnels; pause p50 [\d.]+ms p99 ([\d.]+)ms", proxy.error_text())]


@pytest.mark.timeout(240)
def test_thousand_streaming_websockets_survive_ten_reloads(proxy_factory, echo_backend):
    proxy = proxy_factory([{"path": "/", "to": echo_backend + "/"}], workers=2,
                          mpm={"graceful_timeout": 60}, log={"access": "off"})
    master = psutil.Process(proxy.proc.pid)
    streamer = Streamer(proxy.port, 1000, 2)
    try:
        time.sleep(1.0)
        workers = proxy.worker_pids()
        baseline_master, baseline_workers = master.num_fds(), _fds(workers)
        exit_times = []
        for generation in range(2, 12):
            old = proxy.worker_pids(current_only=False)
            started = time.monotonic()
            os.kill(master.pid, signal.SIGHUP)
            wait_for(lambda old=old: all(_gone(pid) for pid in old), 10, 0.01, f"generation {generation - 1} exits")
            exit_times.append(time.monotonic() - started)
            proxy.wait_ready(generation=generation)
        time.sleep(1.0)
        workers = proxy.worker_pids(current_only=False)
        assert len(workers) == 2
        assert master.num_fds() == baseline_master
        assert abs(_fds(workers) - baseline_workers) <= 4      # 2,000 tunnel fds moved, none leaked
        assert sum(w["tunnels"] for w in proxy.status()["workers"]) == 1000
    finally:
        result = streamer.finish()
    assert result["errors"] == []
    assert result["closed"] == 0
    assert result["echoed"] == result["sent"] and result["sent"] > 1000 * 10
    assert max(exit_times) < 2.0, exit_times
    pauses = _pauses(proxy)
    assert len(pauses) == 20            # two receiving workers per reload
    print(f"\nold generation gone after {max(exit_times):.2f}s at most; hand-over pause p99 per batch "
          f"{sorted(pauses)}; longest silence seen by a client {result['longest_gap_ms']} ms")


@pytest.mark.timeout(90)
def test_killed_successor_loses_only_its_share(proxy_factory, echo_backend):
    """A new-generation worker killed -9 while tunnels arrive: only what it held is lost."""
    proxy = proxy_factory([{"path": "/", "to": echo_backend + "/"}], workers=2,
                          mpm={"graceful_timeout": 30}, log={"access": "off"})
    streamer = Streamer(proxy.port, 200, 2)
    try:
        time.sleep(0.5)
        os.kill(proxy.proc.pid, signal.SIGHUP)
        status = proxy.wait_ready(generation=2)
        victim = next(w["pid"] for w in status["workers"] if w["generation"] == 2)
        os.kill(victim, signal.SIGKILL)
        proxy.wait_ready(generation=2)        # respawned
        wait_for(lambda: all(w["generation"] == 2 for w in proxy.status()["workers"]), 10, 0.1, "old gone")
        time.sleep(1.0)
        survivors = sum(w["tunnels"] for w in proxy.status()["workers"])
    finally:
        result = streamer.finish()
    # The victim held at most its share (about half); everyone else kept streaming, in order.
    assert result["errors"] == [] or all("recv" in e or "send" in e for e in result["errors"])
    assert 0 < result["closed"] <= 150
    assert survivors == 200 - result["closed"]
    assert "hand-over: passed" in proxy.error_text()
