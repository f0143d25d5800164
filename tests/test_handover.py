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
from support import ROOT, wait_for


@pytest.fixture
def echo_backend(bench_backend):
    return f"http://127.0.0.1:{bench_backend.port}"


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
    streaming_since = time.monotonic()
    try:
        time.sleep(1.0)
        workers = proxy.worker_pids()
        baseline_master, baseline_workers = master.num_fds(), _fds(workers)
        exit_times = []
        for generation in range(2, 12):
            old = proxy.worker_pids(current_only=False)
            started = time.monotonic()
            os.kill(master.pid, signal.SIGHUP)
            try:
                wait_for(lambda old=old: all(_gone(pid) for pid in old), 10, 0.01, f"generation {generation - 1} exits")
            except AssertionError as exc:     # (clean-clone CI failed here once, under load: say why)
                raise AssertionError(f"{exc}\n{proxy.error_text()[-4000:]}") from None
            exit_times.append(time.monotonic() - started)
            proxy.wait_ready(generation=generation)
        # Over 10 messages per connection in all (the assertion below), however fast the reloads went.
        time.sleep(max(1.0, streaming_since + 6.5 - time.monotonic()))
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
    # The old generation leaves because it handed its tunnels over, not because graceful_timeout
    # (60 s) ran out.  How fast the hand-over is, is the pauses' figure (below) and bench S6's:
    # the exit time also holds the test's own sleeps and a loaded machine's scheduling (2.6 s in a
    # CI run of two test files at once on a machine shared with three other sessions).
    assert max(exit_times) < 5.0, exit_times
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
        proxy.wait_ready(generation=2)

        def loaded_successor():      # one that holds tunnels already (killed empty, it loses nothing)
            held = [w for w in proxy.status()["workers"] if w["generation"] == 2 and w["tunnels"]]
            return min(held, key=lambda w: w["tunnels"])["pid"] if held else None
        victim = wait_for(loaded_successor, 10, 0.02, "tunnels on a new-generation worker")
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


@pytest.mark.timeout(60)
def test_tls_tunnels_stay_on_the_old_worker_until_graceful_timeout(proxy_factory, ws_backend, tmp_path):
    """A TLS session lives in the old process: it cannot move, so it stays (and status says so)."""
    import asyncio
    import ssl

    import trustme
    from websockets.asyncio.client import connect
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/", "to": echo.url + "/"}], start=False, workers=1,
                          mpm={"graceful_timeout": 3})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": str(cert_path), "key": str(key_path)}}]
    proxy.start()
    context = ssl.create_default_context()
    ca.configure_trust(context)

    async def scenario():
        async with connect(f"wss://localhost:{proxy.port}/x", ssl=context) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            old = proxy.worker_pids()[0]
            os.kill(proxy.proc.pid, signal.SIGHUP)
            await asyncio.sleep(1.0)
            status = proxy.status()
            stayed = [w for w in status["workers"] if w["pid"] == old]
            assert stayed and stayed[0]["tunnels"] == 1 and status["old_generation_workers"] == 1
            await ws.send("still here")
            assert await ws.recv() == "still here"       # served by the old worker meanwhile
            started = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except Exception:    # noqa: BLE001 - the close, however the library reports it
                pass
            return old, time.monotonic() - started
    old, waited = asyncio.run(scenario())
    assert waited < 5                                  # closed at graceful_timeout (3 s), not later
    wait_for(lambda: _gone(old), 5, 0.05, "old worker exits")
    assert "hand-over: passed 0 tunnels and connections to the successor; 1 tunnels and 0 connections stay" \
        in proxy.error_text()


@pytest.mark.timeout(90)
def test_recycled_worker_hands_its_tunnels_to_its_replacement(proxy_factory, echo_backend):
    """MaxConnectionsPerChild: the worker stops itself, its replacement adopts its tunnels."""
    proxy = proxy_factory([{"path": "/", "to": echo_backend + "/"}], workers=1,
                          mpm={"max_connections_per_child": 50, "graceful_timeout": 30}, log={"access": "off"})
    first = proxy.worker_pids()[0]
    streamer = Streamer(proxy.port, 50, 4)          # the 50th connection triggers the recycle
    try:
        wait_for(lambda: _gone(first), 10, 0.05, "the recycled worker exits")
        time.sleep(1.0)
        status = proxy.status()
        assert [w["pid"] for w in status["workers"]] != [first]
        assert sum(w["tunnels"] for w in status["workers"]) == 50
    finally:
        result = streamer.finish()
    assert result["errors"] == [] and result["closed"] == 0 and result["echoed"] == result["sent"]
    assert "MaxConnectionsPerChild (50) reached" in proxy.error_text()
    assert "hand-over: passed 50 tunnels" in proxy.error_text()


@pytest.mark.timeout(120)
def test_mpmctl_upgrade_moves_every_tunnel_to_the_new_master(proxy_factory, echo_backend):
    """Hot upgrade (nginx's USR2, gunicorn's re-exec): a new master from a fresh exec takes the
    listening sockets and, through its workers, every tunnel; nothing is refused or dropped."""
    import threading
    proxy = proxy_factory([{"path": "/", "to": echo_backend + "/"}], workers=2, log={"access": "off"})
    old_master = proxy.proc.pid
    old_workers = proxy.worker_pids()
    streamer = Streamer(proxy.port, 300, 4)
    refused: list = []
    served = [0]
    stop = threading.Event()

    def hammer():
        import socket
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                    sock.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                    if not data.startswith(b"HTTP/1.1 200"):
                        refused.append(data[:40])
                    served[0] += 1
            except OSError as exc:
                refused.append(repr(exc))
    thread = threading.Thread(target=hammer)
    thread.start()
    new_master = None
    try:
        time.sleep(0.5)
        result = proxy.mpmctl("upgrade", timeout=90)
        assert result.returncode == 0, result.stderr + result.stdout
        new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
        assert new_master != old_master
        assert proxy.proc.wait(5) == 0                      # the old master finished and left
        assert all(_gone(pid) for pid in old_workers)
        time.sleep(1.0)
        status = proxy.status()
        assert status["master_pid"] == new_master and status["generation"] == 2
        assert sum(w["tunnels"] for w in status["workers"]) == 300
        stop.set()
        thread.join(10)
        streamed = streamer.finish()
    finally:
        stop.set()
        if new_master is not None:
            proxy.mpmctl("stop")
            wait_for(lambda: not psutil.pid_exists(new_master) or _gone(new_master), 20, 0.1, "new master stops")
    assert refused == [] and served[0] > 0
    assert streamed["errors"] == [] and streamed["closed"] == 0 and streamed["echoed"] == streamed["sent"]
    assert "upgrade: master pid" in proxy.error_text() and "hand-over: passed" in proxy.error_text()
