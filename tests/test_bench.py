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
    assert line.startswith(("listening on http://127.0.0.1:", "listening on https://127.0.0.1:")), line
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


@pytest.mark.timeout(240)
def test_the_floor_is_measured_on_plain_scenarios_and_left_out_of_tls_ones(tmp_path):
    """`--peers floor` (bench/floor.py, the least a Python proxy does) serves S1 and S3 through
    the harness, with every echo right and every response whole (wrk counts a short or broken
    one as an error), and its TLS cell says it is not supported instead of failing; the CPU
    table's ratios stay against the lowest real proxy."""
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--peers", "mpm,floor", "--scenarios", "S1,S3,S7a",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert "floor" in results["meta"]["peers_run"], results["meta"]["not_run"]
    by = {(c["scenario"], c["peer"]): c for c in results["cells"]}
    assert by["S1", "floor"]["ok"] and by["S1", "floor"]["rps"] > 0 and by["S1", "floor"]["errors"] == 0
    assert by["S3", "floor"]["ok"] and by["S3", "floor"]["messages"] > 0 and by["S3", "floor"]["mismatches"] == 0
    assert by["S7a", "floor"]["unsupported"] == "the floor has no TLS (bench/floor.py)"
    markdown = (out / "results.md").read_text()
    s1 = next(line for line in markdown.splitlines() if line.startswith("| S1 | µs/req |"))
    assert s1.split("|")[3].strip().split("(")[1].startswith("1.00×"), s1     # mpm: the lowest real proxy


@pytest.mark.timeout(240)
def test_base_python_runs_mpm_base_under_the_named_interpreter(tmp_path):
    """`--base . --base-python P`: mpm-base is this code under interpreter P (here a wrapper
    that leaves a mark, then runs this Python), measured beside mpm."""
    mark = tmp_path / "used"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {mark}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "bench", "--tiny", "--peers", "mpm", "--scenarios", "S1", "--base", ".",
                    "--base-python", str(wrapper), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                   timeout=220)
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert {"mpm", "mpm-base"} <= set(meta["peers_run"]), meta["not_run"]
    assert "-m mpm start" in mark.read_text()


# -- a fresh machine: a missing tool skips what needs it and fails nothing (issue #13) ---------------

@pytest.mark.timeout(240)
def test_missing_tool_skips_its_cell_and_keeps_exit_status_zero(tmp_path):
    """Without wrk, S7c (TLS handshakes) is skipped with the install hint, S1 runs on the built-in
    generator, and the exit status is 0; --ws-gen python runs S3 on the Python fallback."""
    out = tmp_path / "results"
    env = {**os.environ, "MPM_BENCH_HIDE": "wrk,matplotlib"}
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--peers", "direct", "--scenarios", "S1,S3,S7c",
                           "--ws-gen", "python", "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=220)
    results = json.loads((out / "results.json").read_text())
    meta, cells = results["meta"], results["cells"]
    assert proc.returncode == 0, (proc.stderr[-2000:], [c.get("notes") for c in cells])
    assert list(meta["skipped"]) == ["S7c"]
    assert "wrk" in meta["skipped"]["S7c"] and "--setup" in meta["skipped"]["S7c"]
    assert meta["http_tool"].startswith("built-in")
    assert meta["ws_tool"].startswith("bench/loadgen_ws.py (Python")
    assert {c["scenario"] for c in cells} == {"S1", "S3"} and all(c["ok"] for c in cells)
    assert next(c for c in cells if c["scenario"] == "S3")["ws_generator"] == "Python"
    markdown = (out / "results.md").read_text()
    assert "S7c" in markdown and "skipped" in markdown and "no plots: matplotlib is missing" in markdown
    assert not (out / "ratios.png").exists()


def test_no_compiler_means_the_python_generator(tmp_path, monkeypatch):
    from bench import wsgen
    monkeypatch.setenv("MPM_BENCH_HIDE", "gcc")
    monkeypatch.setattr(wsgen, "BINARY", str(tmp_path / "loadgen_ws"))
    gen = wsgen.choose()
    assert gen.binary is None and "gcc" in gen.why_python
    assert gen.argv("ws://127.0.0.1:1/ws", 2, 64, 1.0)[1:3] == ["-m", "bench.loadgen_ws"]
    assert "Python" in gen.describe()


# -- the C WebSocket load generator (bench/loadgen_ws.c) ------------------------------------------------

@pytest.fixture(scope="module")
def c_generator(tmp_path_factory):
    """The C generator, built into a temp dir with this machine's gcc (CI installs gcc and libssl-dev)."""
    from bench import tools, wsgen
    if not tools.which("gcc"):
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is missing: .ci/run installs it")
        pytest.skip("no gcc here: the harness falls back to the Python generator")
    binary = str(tmp_path_factory.mktemp("cgen") / "loadgen_ws")
    ok, message = wsgen.build(binary)
    assert ok, message
    return binary, wsgen.features(binary)


def run_generator(binary: str, url: str, *args: str, stdin: str | None = None) -> list[dict]:
    argv = [binary, "--url", url, *args] + ([] if stdin is not None else ["--standalone"])
    proc = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def assert_exact(result: dict, count: int, size: int) -> None:
    assert result["event"] == "result" and result["generator"] == "c"
    assert result["messages"] >= count and result["mismatches"] == 0 and result["dropped"] == 0, result["notes"]
    assert result["payload_bytes"] == result["messages"] * size and result["still_busy"] == 0
    assert sum(result["hist"].values()) == result["messages"]


def test_c_generator_echoes_byte_exact(backend, c_generator):
    binary, _ = c_generator
    url = f"ws://127.0.0.1:{backend}/ws"
    for size in (0, 1, 125, 126, 65535, 65536, 1024 * 1024 + 3):
        ready, result = run_generator(binary, url, "--conns", "3", "--size", str(size), "--count", "40")
        assert ready == {**ready, "event": "ready", "connected": 3, "failed": 0}
        assert_exact(result, 40, size)
    # The harness's conversation: ready, then check (one message per connection), go, exit.
    ready, check, go = run_generator(binary, url, "--conns", "5", "--size", "32", "--duration", "0.3",
                                     stdin="check\ngo\nexit\n")
    assert ready["connected"] == 5 and check["mode"] == "check" and check["messages"] == 5
    assert_exact(go, 5, 32)
    assert go["open_at_end"] == 5


def fake_echo_server(misbehave: str):
    """One WebSocket connection served by hand: a correct upgrade, then the first echo goes wrong:
    ``flip`` sends it back with one payload byte changed, ``close`` closes after half of it."""
    import base64
    import hashlib
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(v for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
                       if k.lower() == b"sec-websocket-key").strip()
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            frame = b""
            while len(frame) < 2 + 4 + 16:
                frame += conn.recv(4096)
            mask = frame[2:6]
            payload = bytearray(b ^ mask[i % 4] for i, b in enumerate(frame[6:22]))
            if misbehave == "flip":
                payload[7] ^= 0x01
                conn.sendall(bytes([0x82, 16]) + payload)
                conn.recv(4096)   # until the generator gives up on this connection
            else:
                conn.sendall(bytes([0x82, 16]) + payload[:8])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("misbehave", ["flip", "close"])
def test_c_generator_catches_a_bad_echo(c_generator, misbehave):
    """A flipped byte is a mismatch; a connection closed mid-echo is dropped with its bytes counted lost."""
    binary, _ = c_generator
    listener, thread = fake_echo_server(misbehave)
    try:
        ready, result = run_generator(binary, f"ws://127.0.0.1:{listener.getsockname()[1]}/ws",
                                      "--conns", "1", "--size", "16", "--count", "5")
    finally:
        thread.join(20)
        listener.close()
    assert ready["connected"] == 1 and result["messages"] == 0 and result["open_at_end"] == 0
    if misbehave == "flip":
        assert result["mismatches"] == 1 and "echo differs from the message sent" in result["notes"]
    else:
        assert result["dropped"] == 1 and result["lost_bytes"] == 8 and result["mismatches"] == 0
        assert "closed by the other side" in result["notes"]


def test_c_generator_over_tls(tmp_path, c_generator):
    binary, features = c_generator
    if not features.get("tls"):
        if os.environ.get("CI") == "true":
            pytest.fail("the C generator was built without OpenSSL: .ci/run installs libssl-dev")
        pytest.skip("no OpenSSL headers (libssl-dev) here: the wss:// cells use the Python generator")
    from bench.certs import make_cert
    cert, key, _ = make_cert(str(tmp_path))
    proc, port = start_backend("--tls-cert", cert, "--tls-key", key)
    try:
        for size in (64, 100_000):
            ready, result = run_generator(binary, f"wss://127.0.0.1:{port}/ws", "--conns", "4", "--size",
                                          str(size), "--count", "60")
            assert ready["connected"] == 4, ready["notes"]
            assert_exact(result, 60, size)
    finally:
        proc.terminate()
        proc.wait(10)


# -- the C floor (issue #20): a connection owned by C, measured by bench/saturate.py --------------
def test_the_c_floor_answers_over_tls_and_resumes_the_session(backend, tmp_path):
    """bench/floor_c.py serves what the proxy would: the backend's response to an https request,
    its head saying the connection closes, after a handshake on the product's own SSLContext;
    and a client that offers the session again resumes it (S7c's client does at every connection)."""
    import shutil
    import socket
    import ssl

    from bench import procs
    from bench.certs import make_cert
    from tests.support import free_port
    if shutil.which("cc") is None or not Path("/usr/include/openssl/ssl.h").exists():
        pytest.skip("no C compiler or OpenSSL headers here (.ci/run installs both)")
    cert, key, _ = make_cert(str(tmp_path), "ec")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.floor_c", "--port", str(port), "--backend-port", str(backend),
                             "--cert", cert, "--key", key], cwd=ROOT, stderr=open(tmp_path / "floor.err", "w"))
    try:
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_3
        session = None
        answers = []
        assert procs.wait_port(port, proc, timeout=30), (tmp_path / "floor.err").read_text()
        while len(answers) < 2:
            with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), session=session) as tls:
                tls.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                answers.append((data, tls.session_reused))
                session = tls.session
        for data, _ in answers:
            head, body = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 OK\r\nConnection: close\r\n") and body == b"x" * 99 + b"\n"
        assert [reused for _, reused in answers] == [False, True]
    finally:
        proc.terminate()
        proc.wait(10)
