"""README, first lines: `python -m demo` prints a URL that serves the demo page, its WebSocket
echo works through the proxy, and Ctrl-C stops both, leaving nothing behind: no process and
no scratch directory (each run made one under $TMPDIR that stayed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from support import free_port
from websockets.sync.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _group(pgid: int) -> list[int]:
    """Pids still in the demo's process group (the demo, its backend, the master, workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except ProcessLookupError:
                pass
    return pids


@pytest.mark.timeout(60)
def test_demo_serves_echoes_and_ctrl_c_leaves_nothing(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "demo", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, TMPDIR=str(scratch)), start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo ended before printing its URL"
            if "open http://" in line:
                url = line.split("open ", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert b"WebSocket echo" in response.read()
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
            ws.send("through the proxy")
            assert ws.recv(timeout=5) == "through the proxy"
        assert len(os.listdir(scratch)) == 1            # the demo's config directory, while it runs

        os.killpg(demo.pid, signal.SIGINT)               # Ctrl-C: the terminal signals the whole group
        assert demo.wait(20) == 0
        deadline = time.monotonic() + 10
        while _group(demo.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(demo.pid) == []
        assert os.listdir(scratch) == []
    finally:
        for pid in _group(demo.pid):
            os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            demo.wait(5)
