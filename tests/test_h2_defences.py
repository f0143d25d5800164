"""HTTP/2 defences (issue #17): rapid reset (CVE-2023-44487), CONTINUATION floods (2024),
SETTINGS and PING floods, idle connections.  Each attack ends in GOAWAY and a closed
connection, with the worker up (same pid), its memory and CPU bounded, and a legitimate
connection on the same worker served before, during and after.  The attacks are written as
raw frames (hyperframe, hpack), so nothing on the client side softens them."""

from __future__ import annotations

import socket
import struct
import time

import psutil
import pytest
from h2client import H2Client
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, NO_ERROR = 0xB, 0x1, 0x0


def _app(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        conn.send(respond(200, b"ok"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    backend = RawBackend(_app)
    proxy = Proxy(tmp_path_factory.mktemp("h2def"), [{"path": "/", "to": backend.url + "/"}], workers=1,
                  timeouts={"keepalive": 2, "client_header": 2})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    yield proxy, backend
    proxy.stop()
    backend.close()


def _worker(proxy) -> psutil.Process:
    return psutil.Process(proxy.worker_pids()[0])


def _attacker(proxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    return sock


def _goaway_of(sock: socket.socket, timeout: float = 10.0) -> tuple[int, int] | None:
    """Read until the proxy closes; (last stream id, error code) of its GOAWAY, if it sent one."""
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    pos, found = 0, None
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] == 7 and pos + 9 + 8 <= len(data):            # GOAWAY
            found = struct.unpack(">II", data[pos + 9:pos + 17])
        pos += 9 + length
    return found


def _request_block(encoder: Encoder, path: str = "/attack") -> bytes:
    return encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "proxy.test"), (":path", path)])


def _legitimate(proxy) -> H2Client:
    client = H2Client(proxy.port)
    assert client.get("/before").status == 200
    return client


@pytest.mark.timeout(60)
def test_rapid_reset_ends_in_goaway_and_costs_the_worker_little(env):
    proxy, backend = env
    worker = _worker(proxy)
    legit = _legitimate(proxy)
    rss_before, cpu_before = worker.memory_info().rss, sum(worker.cpu_times()[:2])
    backend_before = len(backend.requests)
    # 20,000 streams opened and reset at once, written as fast as the socket takes them.
    attacker, encoder = _attacker(proxy), Encoder()
    frames = bytearray()
    for stream_id in range(1, 40_001, 2):
        frames += HeadersFrame(stream_id, data=_request_block(encoder), flags=["END_HEADERS", "END_STREAM"]).serialize()
        frames += RstStreamFrame(stream_id, error_code=8).serialize()
    try:
        attacker.sendall(frames)
    except (BrokenPipeError, ConnectionResetError):
        pass                                        # closed on us mid-attack: that is the point
    goaway = _goaway_of(attacker)
    attacker.close()
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, goaway
    assert goaway[0] < 40_000                       # processing stopped long before the end
    # Streams reset in the read that opened them never reach a backend.
    assert len(backend.requests) - backend_before <= 250
    # A slower variant: each HEADERS is read (and started) before its RST_STREAM arrives.
    attacker, encoder = _attacker(proxy), Encoder()
    closed_after = None
    for n, stream_id in enumerate(range(1, 2001, 2)):
        try:
            attacker.sendall(HeadersFrame(stream_id, data=_request_block(encoder),
                                          flags=["END_HEADERS", "END_STREAM"]).serialize())
            time.sleep(0.0005)
            attacker.sendall(RstStreamFrame(stream_id, error_code=8).serialize())
        except (BrokenPipeError, ConnectionResetError):
            closed_after = n
            break
    goaway = _goaway_of(attacker)
    attacker.close()
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, (goaway, closed_after)
    # The worker: the same process, a few MiB more at most, well under a second of CPU per attack.
    assert worker.is_running() and proxy.worker_pids() == [worker.pid]
    grown, cpu = worker.memory_info().rss - rss_before, sum(worker.cpu_times()[:2]) - cpu_before
    print(f"rapid reset: worker grew {grown >> 10} KiB, used {cpu:.2f} s of CPU")
    assert grown < 32 << 20 and cpu < 5
    # Another client of the worker is served.  The connection opened before the attacks was
    # idle through them: on a loaded machine they outlast timeouts.keepalive (2 s here), and its
    # GOAWAY NO_ERROR is then the proxy doing its job, so a fresh one asks too.
    try:
        assert legit.get("/after").status == 200
    except AssertionError as exc:
        assert "connection closed" in str(exc), exc
        assert _legitimate(proxy).get("/after").status == 200
    legit.close()
    assert "too many streams reset by the client" in proxy.error_text()


@pytest.mark.timeout(60)
def test_streams_the_proxy_resets_for_the_clients_errors_cost_as_resets_do(env):
    """"MadeYouReset" (CVE-2025-8671): the client makes the server reset each stream (here,
    more DATA than its content-length) instead of resetting it itself. Each such stream has
    started a backend request, so it spends from the same budget: GOAWAY ENHANCE_YOUR_CALM."""
    proxy, backend = env
    legit = _legitimate(proxy)
    backend_before = len(backend.requests)
    attacker, encoder = _attacker(proxy), Encoder()
    post = [(":method", "POST"), (":scheme", "http"), (":authority", "proxy.test"), (":path", "/made-you-reset"),
            ("content-length", "1")]
    cycles = 0
    try:
        for stream_id in range(1, 3001, 2):
            attacker.sendall(HeadersFrame(stream_id, data=encoder.encode(post), flags=["END_HEADERS"]).serialize())
            time.sleep(0.0005)                      # read alone: the stream starts, its backend request goes
            attacker.sendall(DataFrame(stream_id, data=b"ab").serialize())     # one byte more than announced
            cycles += 1
    except (BrokenPipeError, ConnectionResetError):
        pass
    goaway = _goaway_of(attacker)
    attacker.close()
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, (goaway, cycles)
    assert len(backend.requests) - backend_before < 400, "the budget did not bound the backend requests"
    assert legit.get("/after").status == 200
    legit.close()
    assert "too many streams reset for protocol errors" in proxy.error_text()


@pytest.mark.timeout(60)
def test_continuation_flood_ends_in_goaway_with_memory_bounded(env):
    proxy, backend = env
    worker = _worker(proxy)
    legit = _legitimate(proxy)
    rss_before = worker.memory_info().rss
    for size in (16384, 0):                  # full frames (memory), empty frames (CPU)
        attacker, encoder = _attacker(proxy), Encoder()
        attacker.sendall(HeadersFrame(1, data=_request_block(encoder)[:5]).serialize())   # no END_HEADERS
        piece = ContinuationFrame(1, data=b"\x00" * size).serialize()
        sent = 0
        try:
            for _ in range(5000):                    # an endless header block, as far as the client goes
                attacker.sendall(piece)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        goaway = _goaway_of(attacker)
        attacker.close()
        assert goaway is not None and goaway[1] in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM), goaway
        assert legit.get(f"/during-{size}").status == 200
    assert worker.memory_info().rss - rss_before < 32 << 20
    assert proxy.worker_pids() == [worker.pid]
    assert legit.get("/after").status == 200
    legit.close()


@pytest.mark.timeout(60)
def test_settings_and_ping_floods_end_in_goaway(env):
    proxy, _ = env
    legit = _legitimate(proxy)
    for frame, kind in ((SettingsFrame(0, settings={4: 65535}), "SETTINGS"),
                        (PingFrame(0, opaque_data=b"12345678"), "PING")):
        attacker = _attacker(proxy)
        try:
            attacker.sendall(frame.serialize() * 5000)      # and never read the acknowledgements
        except (BrokenPipeError, ConnectionResetError):
            pass
        goaway = _goaway_of(attacker)
        attacker.close()
        # The GOAWAY goes behind the acknowledgements the attacker leaves unread. Once those
        # fill its window, the reset that closing over unread frames sends (TCP) discards it:
        # then only the log tells why the connection ended. It failed a CI run on a loaded machine.
        assert goaway is None or goaway[1] == ENHANCE_YOUR_CALM, (frame, goaway)
        wait_for(lambda kind=kind: f"too many {kind} frames: GOAWAY ENHANCE_YOUR_CALM" in proxy.error_text(), 5,
                 what=f"the {kind} flood cut")
    assert legit.get("/after").status == 200
    legit.close()


@pytest.mark.timeout(30)
def test_idle_connections_and_missing_prefaces_are_closed(env):
    proxy, _ = env
    client = H2Client(proxy.port)
    assert client.get("/once").status == 200
    started = time.monotonic()
    client.wait(lambda: client.goaway is not None or client.closed, 6, "the idle connection's GOAWAY")
    assert 1.5 < time.monotonic() - started < 5                # timeouts.keepalive: 2
    assert client.goaway is None or client.goaway.error_code == NO_ERROR
    client.close()
    # Half a preface and silence: closed at timeouts.client_header.
    silent = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    silent.sendall(PREFACE[:10])
    started = time.monotonic()
    try:
        assert silent.recv(100) == b""
    except ConnectionResetError:
        pass                     # closed with the unread half preface: a reset
    assert 1.5 < time.monotonic() - started < 5
    silent.close()
    wait_for(lambda: proxy.status()["totals"]["connections"] == 0, 5, what="every connection closed")
