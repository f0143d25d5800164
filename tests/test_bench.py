"""The benchmark harness keeps working: it runs on tiny counts and its output has the promised shape.

Nothing here looks at a timing: only keys, rows and the checks that are about correctness
(every echo came back, nothing was dropped).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def start_backend(*extra: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.backends", "--host", "127.0.0.1", "--port", "0", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return proc, int(line.rsplit(":", 1)[1])


@pytest.fixture
def backend():
    proc, port = start_backend()
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_backend_http_pipelined(backend):
    import socket
    with socket.create_connection(("127.0.0.1", backend), timeout=5) as sock:
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /64k HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert b"Content-Length: 100\r\n" in data and b"Content-Length: 65536\r\n" in data
    assert b'id="count"' in data   # the demo page


def test_backend_websocket_echo(backend):
    websockets = pytest.importorskip("websockets")
    from websockets.asyncio.client import connect

    async def talk():
        async with connect(f"ws://127.0.0.1:{backend}/ws", max_size=None, compression=None) as ws:
            for size in (0, 1, 125, 126, 65535, 65536, 3 * 1024 * 1024 + 7):
                payload = os.urandom(size)
                await ws.send(payload)
                assert await ws.recv() == payload
            await ws.send("text é")
            assert await ws.recv() == "text é"
            await ws.send(["frag", "ments"])
            assert await ws.recv() == "fragments"
            await (await ws.ping(b"p"))
        assert ws.close_code == 1000

    assert websockets
    asyncio.run(asyncio.wait_for(talk(), 30))


@pytest.mark.timeout(240)
def test_harness_tiny_run(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--peers", "direct,mpm", "--scenarios",
                           "S1,S3,S5,S6", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()

    meta = results["meta"]
    for key in ("started", "finished", "mode", "rounds", "scenarios", "peers_run", "not_run", "versions",
                "http_tool", "machine", "disturbed_threshold"):
        assert key in meta, key
    assert meta["mode"] == "tiny"
    assert meta["scenarios"] == ["S1", "S3", "S5", "S6"]
    assert "direct" in meta["peers_run"]
    assert set(meta["peers_run"]) | set(meta["not_run"]) == {"direct", "mpm"}

    ran = meta["peers_run"]
    cells = results["cells"]
    assert {(c["scenario"], c["peer"]) for c in cells} == {(s, p) for s in meta["scenarios"] for p in ran}
    for cell in cells:
        for key in ("round", "ok", "disturbed", "outside_load_cores", "wall_s", "proxy_cpu_s"):
            assert key in cell, (cell["scenario"], cell["peer"], key, cell.get("error"))
    by = {(c["scenario"], c["peer"]): c for c in cells}
    assert by["S1", "direct"]["rps"] > 0 and by["S1", "direct"]["errors"] == 0
    assert by["S3", "direct"]["msgs_s"] > 0 and by["S3", "direct"]["mismatches"] == 0
    assert by["S5", "direct"]["echo_failed"] == 0
    assert by["S6", "direct"]["dropped"] == 0
    for peer in ran:
        if peer != "direct":
            assert "proxy_cpu_per_unit" in by["S1", peer]
            assert "rss_per_conn_kib" in by["S5", peer]

    assert {(s["scenario"], s["peer"]) for s in results["summary"]} == set(by)
    assert [c["scenario"] for c in results["checks"]] == ["S1", "S3"]
    assert "| scenario | figure | " + " | ".join(ran) + " |" in markdown
    for sid in meta["scenarios"]:
        assert f"| {sid} " in markdown


@pytest.mark.timeout(240)
def test_mpm_is_measured(tmp_path):
    """The product itself starts from the generated config and serves every plain scenario."""
    out = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "bench", "--tiny", "--peers", "mpm", "--scenarios", "S1,S3",
                    "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=220)
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert "mpm" in meta["peers_run"], meta["not_run"].get("mpm")
