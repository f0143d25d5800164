"""HTTP/2 budgets stop the work they budget (review 2026-12-03-tls-h2 #2): they are charged
from the frame headers before h2 parses a read, so a flood is cut at the frame that empties
a budget, not after h2 has parsed and answered a whole 64-256 KiB read (7,282 SETTINGS ACKs
for a budget of 500, 70-85 % of the worker for a client that reconnects in a loop).  The
victim is a keep-alive HTTP/1.1 client of the same worker."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

import psutil
import pytest
from proxyproc import Proxy
from rawbackend import RawBackend, RawConn, respond

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
CONTROL_BURST = 500                     # worker.h2.defences


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BHBBL", len(payload) >> 16, len(payload) & 0xFFFF, kind, flags, stream_id) + payload


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, flags, payload) of each whole frame in what the proxy sent."""
    found, pos = [], 0
    while pos + 9 <= len(data):
        high, low, kind, flags, _ = struct.unpack_from(">BHBBL", data, pos)
        length = high << 16 | low
        found.append((kind, flags, bytes(data[pos + 9:pos + 9 + length])))
        pos += 9 + length
    return found


def _app(conn: RawConn) -> None:
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        conn.send(respond(200, b"ok"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    backend = RawBackend(_app)
    proxy = Proxy(tmp_path_factory.mktemp("h2flood"), [{"path": "/", "to": backend.url + "/"}], workers=1,
                  timeouts={"keepalive": 5, "client_header": 5, "lingering": 1})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    yield proxy
    proxy.stop()
    backend.close()


def _until_closed(sock: socket.socket, seconds: float = 5.0) -> bytes:
    sock.settimeout(seconds)
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _settings_flood(port: int) -> tuple[int, int | None]:
    """One connection, one 256 KiB write of empty SETTINGS frames: (ACKs, GOAWAY code)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(PREFACE + _frame(4, 0, 0) + _frame(4, 0, 0) * (256 * 1024 // 9))
    except OSError:
        pass                                     # closed on us mid-write: that is the point
    frames = _frames(_until_closed(sock))
    sock.close()
    acks = sum(1 for kind, flags, _ in frames if kind == 4 and flags & 1)
    codes = [struct.unpack(">II", payload[:8])[1] for kind, _, payload in frames if kind == 7]
    return acks, codes[0] if codes else None


class _Victim:
    """Keep-alive GETs, one every 20 ms; their latencies in ms."""

    def __init__(self, port: int):
        self.port, self.latencies, self.stopping = port, [], False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            while not self.stopping:
                started = time.perf_counter()
                sock.sendall(b"GET /victim HTTP/1.1\r\nHost: v\r\n\r\n")
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"ok"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)

    def stop(self) -> list[float]:
        self.stopping = True
        self.thread.join(10)
        return self.latencies


@pytest.mark.timeout(30)
def test_a_settings_flood_is_cut_at_its_budget_and_costs_the_worker_little(env):
    worker = psutil.Process(env.worker_pids()[0])
    acks, code = _settings_flood(env.port)
    print(f"one 256 KiB write of SETTINGS: {acks} ACKs, GOAWAY code {code}")
    assert acks <= CONTROL_BURST and code in (ENHANCE_YOUR_CALM, None), (acks, code)
    # A client that reconnects in a loop, each connection one such write, for 2 s, with a
    # victim on the same worker: the worker's CPU per flood connection, and the victim's latency.
    victim = _Victim(env.port)
    time.sleep(0.3)
    cpu_before, floods, most_acks = sum(worker.cpu_times()[:2]), 0, 0
    end = time.monotonic() + 2.0
    while time.monotonic() < end:               # 20 a second at most: ~5 MB/s of SETTINGS
        most_acks = max(most_acks, _settings_flood(env.port)[0])
        floods += 1
        time.sleep(0.05)
    cpu = sum(worker.cpu_times()[:2]) - cpu_before
    latencies = victim.stop()
    median, worst = statistics.median(latencies), max(latencies)
    print(f"{floods} flood connections in 2 s: at most {most_acks} ACKs each, worker CPU {cpu:.2f} s "
          f"({1000 * cpu / floods:.1f} ms a connection); victim median {median:.1f} ms, worst {worst:.1f} ms "
          f"over {len(latencies)} requests")
    assert most_acks <= CONTROL_BURST
    assert cpu / floods < 0.02, "each flood connection cost the worker more than its budget's work"
    assert worst < 60, latencies
    assert "too many SETTINGS frames: GOAWAY ENHANCE_YOUR_CALM" in env.error_text()
