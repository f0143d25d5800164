"""HTTP/2 budgets stop the work they budget (review 2026-12-03-tls-h2 #2): they are charged
from the frame headers before h2 parses a read, so a flood is cut at the frame that empties
a budget, not after h2 has parsed and answered a whole 64-256 KiB read (7,282 SETTINGS ACKs
for a budget of 500, 70-85 % of the worker for a client that reconnects in a loop).  The
victim is a keep-alive HTTP/1.1 client of the same worker.  And every frame spends from some
budget (#3): WINDOW_UPDATE, and RST_STREAM / WINDOW_UPDATE on closed streams, which h2 drops
without an event, were free, so a client could send them for ever; a client that downloads
and acknowledges as often as Go's does is not cut."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import psutil
import pytest
from hpack import Encoder
from proxyproc import Proxy
from rawbackend import RawBackend, RawConn, respond
from rawsock import recv_until_close

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
CONTROL_BURST = 500                     # worker.h2.defences
BIG = 4 << 20                           # GET /big: a download acknowledged in 4 KiB steps


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
        if head.target == "/early":          # answered before the body, which is never read
            conn.send(respond(413, b"too big"))
            return
        conn.read_body(head)
        conn.send(respond(200, b"z" * BIG if head.target == "/big" else b"ok"))


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


def _settings_flood(port: int) -> tuple[int, int | None]:
    """One connection, one 256 KiB write of empty SETTINGS frames: (ACKs, GOAWAY code)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(PREFACE + _frame(4, 0, 0) + _frame(4, 0, 0) * (256 * 1024 // 9))
    except OSError:
        pass                                     # closed on us mid-write: that is the point
    frames = _frames(recv_until_close(sock, 5.0)[0])
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


def _open_then_flood(port: int, unit: bytes) -> tuple[float | None, int | None]:
    """Stream 1 (a GET) answered and closed, then 64 KiB of `unit` frames every 50 ms for at
    most 2 s: (seconds until the proxy closed, its GOAWAY code), (None, None) if it never did."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
    sock.sendall(PREFACE + _frame(4, 0, 0) + _frame(1, 5, 1, block))
    got = b""
    while not any(kind == 0 and flags & 1 for kind, flags, _ in _frames(got)):    # the answer's END_STREAM
        got += sock.recv(65536)
    burst = unit * (64 * 1024 // len(unit))
    started, got = time.monotonic(), b""
    sock.settimeout(0.05)                       # and 50 ms between bursts, reading
    while time.monotonic() - started < 2.0:
        try:
            sock.sendall(burst)
            got += sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        codes = [struct.unpack(">II", payload[:8])[1] for kind, _, payload in _frames(got) if kind == 7]
        if codes:                               # (a reset may beat it: then the log says why)
            sock.close()
            return time.monotonic() - started, codes[0]
    sock.settimeout(0.5)
    try:
        closed = sock.recv(65536) == b""        # EOF (or a reset) without a GOAWAY seen
    except TimeoutError:
        closed = False                          # still open: the flood costs it nothing
    except OSError:
        closed = True
    sock.close()
    return (time.monotonic() - started if closed else None), None


@pytest.mark.timeout(30)
def test_window_updates_and_frames_on_closed_streams_spend_a_budget(env):
    floods = {"WINDOW_UPDATE on stream 0": _frame(8, 0, 0, struct.pack(">I", 1)),
              "RST_STREAM on closed stream 1": _frame(3, 0, 1, struct.pack(">I", 8)),
              "WINDOW_UPDATE on closed stream 1": _frame(8, 0, 1, struct.pack(">I", 1)),
              # h2 answers each with RST_STREAM and gives the window back: 100,000 resets in 2 s
              # and other clients of the worker waiting 300 ms (review 2026-12-04-h2-downgrade #1)
              "1-byte DATA on closed stream 1": _frame(0, 0, 1, b"x"),
              "empty DATA with END_STREAM on closed stream 1": _frame(0, 1, 1)}
    for name, unit in floods.items():
        closed_after, code = _open_then_flood(env.port, unit)
        print(f"{name}: closed after {closed_after} s, GOAWAY code {code}")
        assert closed_after is not None and closed_after < 1.5, (name, closed_after)     # before: open at 2 s
        assert code in (ENHANCE_YOUR_CALM, None), (name, code)
    errors = env.error_text()
    assert "too many WINDOW_UPDATE frames: GOAWAY ENHANCE_YOUR_CALM" in errors
    assert "too many RST_STREAM frames on closed streams: GOAWAY ENHANCE_YOUR_CALM" in errors
    assert "too many DATA frames on closed streams: GOAWAY ENHANCE_YOUR_CALM" in errors


@pytest.mark.timeout(30)
def test_a_download_acknowledged_in_small_steps_is_not_cut(env):
    """As Go's client: a WINDOW_UPDATE per 4 KiB read, for the stream and for the connection
    (2,048 of them for 4 MiB, four times the burst)."""
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    machine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    machine.initiate_connection()
    machine.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/big")],
                         end_stream=True)
    sock.sendall(machine.data_to_send())
    received, updates, ended, status, goaway = 0, 0, False, None, None
    try:
        while not ended and goaway is None:
            data = sock.recv(65536)
            if not data:
                break
            for event in machine.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    received += len(event.data)
                    for step in range(0, event.flow_controlled_length, 4096):
                        size = min(4096, event.flow_controlled_length - step)
                        machine.increment_flow_control_window(size)
                        updates += 1
                        try:
                            machine.increment_flow_control_window(size, 1)
                            updates += 1
                        except h2.exceptions.StreamClosedError:
                            pass        # END_STREAM came in the same read: nothing more on it
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    goaway = event.error_code
            sock.sendall(machine.data_to_send())
    finally:
        sock.close()
    print(f"download: {received} bytes, {updates} WINDOW_UPDATEs sent, GOAWAY {goaway}")
    assert status == b"200" and received == BIG and ended and goaway is None, (status, received, goaway)
    assert updates > 2000


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", [_frame(6, 0, 3, b"\0" * 8), _frame(0, 0, 0)], ids=["PING-on-stream-3", "DATA-on-stream-0"])
def test_frames_after_one_h2_refuses_spend_nothing(env, bad):
    """A frame on the wrong kind of stream ends the connection with PROTOCOL_ERROR (RFC 9113 §6):
    h2 parses nothing after it, so the frames after it in the same write must spend no budget.
    Before, 600 PINGs after it emptied the control budget first: ENHANCE_YOUR_CALM."""
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as sock:
        sock.sendall(PREFACE + _frame(4, 0, 0) + bad + _frame(6, 0, 0, b"\0" * 8) * 600)
        frames = _frames(recv_until_close(sock, 5.0)[0])
    goaways = [payload for kind, _, payload in frames if kind == 7]
    assert goaways and struct.unpack(">II", goaways[0][:8])[1] == 0x1, frames[-3:]     # PROTOCOL_ERROR
    assert not [kind for kind, flags, _ in frames if kind == 6], "a PING after the refused frame was answered"


def _data_frames(stream_id: int, count: int, size: int, end: bool = False) -> bytes:
    frames = [_frame(0, 0, stream_id, b"y" * size)] * count
    if end:
        frames[-1] = _frame(0, 1, stream_id, b"y" * size)
    return b"".join(frames)


def _answers(sock: socket.socket, wanted, timeout: float = 5.0) -> list[tuple[int, int, bytes]]:
    """Frames from the proxy until `wanted(frames)` (or a GOAWAY)."""
    got, deadline = b"", time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        frames = _frames(got)
        if wanted(frames) or any(kind == 7 for kind, _, _ in frames):
            return frames
        try:
            got += sock.recv(65536)
        except TimeoutError:
            pass
    return _frames(got)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["early-answer", "split-headers"])
def test_an_upload_in_small_frames_within_its_window_is_not_a_flood(env, case):
    """DATA on a closed stream spends the control budget (above), but not what a client had in
    flight when we reset its stream (an upload answered early, 413: 655 frames of 100 bytes fit
    its window), nor an upload whose HEADERS came cut across two reads (its stream was not open
    yet when its DATA was scanned).  Both ended the connection with ENHANCE_YOUR_CALM (review
    2026-12-04-today #2)."""
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    block = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                              (":path", "/early" if case == "early-answer" else "/upload"),
                              ("cookie", "s" * 1500)])
    headers = _frame(1, 4, 1, block)            # END_HEADERS, not END_STREAM: a body follows
    sock.sendall(PREFACE + _frame(4, 0, 0))
    if case == "early-answer":
        sock.sendall(headers + _data_frames(1, 1, 100))
        frames = _answers(sock, lambda frames: any(kind == 3 for kind, _, _ in frames))   # our RST_STREAM
        assert any(kind == 1 for kind, _, _ in frames), frames                              # the 413's head
        sock.sendall(_data_frames(1, 654, 100, end=True))     # what was in flight meanwhile
    else:
        sock.sendall(headers[:len(headers) // 2])
        time.sleep(0.2)
        sock.sendall(headers[len(headers) // 2:] + _data_frames(1, 600, 100, end=True))
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/after")])
    sock.sendall(_frame(1, 5, 3, block))
    frames = _answers(sock, lambda frames: any(kind == 0 and flags & 1 and payload == b"ok"
                                               for kind, flags, payload in frames), timeout=10)
    sock.close()
    assert not any(kind == 7 for kind, _, _ in frames), "GOAWAY: the connection was ended"
    assert any(kind == 0 and payload == b"ok" for kind, _, payload in frames), "no answer to /after"
