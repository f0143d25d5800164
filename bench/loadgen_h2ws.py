"""WebSocket load over HTTP/2 (RFC 8441): S3 as a browser of 2024 sends it through a proxy.

Each connection is TLS with ALPN h2, driven by python-hyper's h2 (a client independent of the
proxy's code); once the server's SETTINGS say ENABLE_CONNECT_PROTOCOL, every stream is an
extended CONNECT (`:protocol websocket`), and each keeps one message in flight: a masked
binary frame out, the whole echo back, compared byte for byte, the round trip recorded in
bench/stats.py's histogram.  A server without RFC 8441 (nginx) fails the `ready` step, and
the harness reports the cell as not supported rather than measured.

It speaks bench/loadgen_ws.py's stdin/stdout protocol (`ready`, then `go` -> `result`, `exit`),
so the harness drives both alike.  Being Python, h2 costs this generator a good deal more CPU
per message than the proxy; the figure that matters is the proxy's CPU per message.

    python -m bench.loadgen_h2ws --url wss://127.0.0.1:8443/ws --conns 64 --streams 8 --duration 5 --standalone
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.settings

from bench.loadgen_ws import client_frame, emit, server_frame
from bench.stats import bucket, require_loopback

WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
VARIANTS = 4


class Stream:
    __slots__ = ("id", "conn", "buf", "t0", "busy", "turn")

    def __init__(self, stream_id: int, conn: Conn):
        self.id, self.conn = stream_id, conn
        self.buf = bytearray()
        self.t0 = 0.0
        self.busy = False
        self.turn = stream_id


class Conn:
    """One TLS connection with its h2 machine, and what it has not written yet."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float):
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        if self.sock.selected_alpn_protocol() != "h2":
            raise OSError(f"ALPN chose {self.sock.selected_alpn_protocol()!r}, not h2")
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 24)
        self.out = b""
        self.streams: dict[int, Stream] = {}
        self.connect_protocol = False
        self.flush_blocking()

    def flush_blocking(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def events_blocking(self, deadline: float) -> list:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(1 << 16)
        if not data:
            raise OSError("the server closed the connection")
        events = self.h2.receive_data(data)
        self.flush_blocking()
        return events


class LoadGen:
    def __init__(self, url: str, size: int, per_conn: int):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 443, parts.path or "/"
        self.size, self.per_conn = size, per_conn
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.context.set_alpn_protocols(["h2"])
        payloads = [os.urandom(size) for _ in range(VARIANTS)]
        self.frames = [client_frame(p, os.urandom(4)) for p in payloads]
        self.echoes = [server_frame(p) for p in payloads]
        self.conns: list[Conn] = []
        self.by_fd: dict[int, Conn] = {}
        self.errors: list[str] = []
        self.epoll = select.epoll()
        self.reset_counters()

    def reset_counters(self) -> None:
        self.completed = self.mismatches = self.dropped = 0
        self.hist: dict[int, int] = {}

    def note(self, text: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(text)

    # -- opening ------------------------------------------------------------------------------------
    def open_all(self, streams: int, timeout: float) -> tuple[int, int, float]:
        started = time.monotonic()
        deadline = started + timeout
        opened = failed = 0
        while opened + failed < streams:
            want = min(self.per_conn, streams - opened - failed)
            try:
                opened += self._open_conn(want, deadline)
            except (OSError, h2.exceptions.ProtocolError) as exc:
                self.note(f"connect: {exc}")
                failed += want
        for conn in self.conns:
            conn.sock.setblocking(False)
            self.by_fd[conn.sock.fileno()] = conn
            self.epoll.register(conn.sock.fileno(), select.EPOLLIN)
        return opened, failed, time.monotonic() - started

    def _open_conn(self, want: int, deadline: float) -> int:
        conn = Conn(self.host, self.port, self.context, max(1.0, deadline - time.monotonic()))
        while not conn.connect_protocol:
            for event in conn.events_blocking(deadline):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    changed = event.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                    if changed is None or not changed.new_value:
                        raise OSError("the server does not offer RFC 8441 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)")
                    conn.connect_protocol = True
        waiting = {}
        for _ in range(want):
            stream_id = conn.h2.get_next_available_stream_id()
            conn.h2.send_headers(stream_id, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                                             (b":scheme", b"https"), (b":authority", b"127.0.0.1"),
                                             (b":path", self.path.encode()), (b"sec-websocket-version", b"13")])
            waiting[stream_id] = Stream(stream_id, conn)
        conn.flush_blocking()
        while any(s.id not in conn.streams for s in waiting.values()):
            for event in conn.events_blocking(deadline):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers).get(b":status")
                    if status != b"200":
                        raise OSError(f"extended CONNECT answered {status!r}")
                    conn.streams[event.stream_id] = waiting[event.stream_id]
                elif isinstance(event, h2.events.StreamReset):
                    raise OSError(f"extended CONNECT reset ({event.error_code})")
        self.conns.append(conn)
        return want

    # -- echoing ------------------------------------------------------------------------------------
    def start_message(self, stream: Stream) -> None:
        stream.turn += 1
        stream.busy = True
        stream.t0 = time.perf_counter()
        stream.conn.h2.send_data(stream.id, self.frames[stream.turn % VARIANTS])

    def flush(self, conn: Conn) -> None:
        data = conn.out + conn.h2.data_to_send()
        if not data:
            return
        try:
            sent = conn.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        conn.out = data[sent:]
        self.epoll.modify(conn.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if conn.out else 0))

    def receive(self, conn: Conn, more: bool) -> None:
        while True:
            try:
                data = conn.sock.recv(1 << 18)
            except WOULD_BLOCK:
                return
            except OSError as exc:
                data = b""
                self.note(f"recv: {exc}")
            if not data:
                self._drop(conn)
                return
            for event in conn.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    stream = conn.streams.get(event.stream_id)
                    if stream is not None:
                        stream.buf += event.data
                        self._check(stream, more)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id in conn.streams:
                    self.dropped += 1
                    del conn.streams[event.stream_id]
            if not conn.sock.pending():
                return

    def _check(self, stream: Stream, more: bool) -> None:
        expected = self.echoes[stream.turn % VARIANTS]
        if len(stream.buf) < len(expected):
            return
        if stream.buf[:len(expected)] != expected:
            self.mismatches += 1
        del stream.buf[:len(expected)]
        b = bucket(time.perf_counter() - stream.t0)
        self.hist[b] = self.hist.get(b, 0) + 1
        self.completed += 1
        stream.busy = False
        if more:
            self.start_message(stream)

    def _drop(self, conn: Conn) -> None:
        self.note("the server closed a connection")
        self.dropped += len(conn.streams)
        conn.streams.clear()
        self.epoll.unregister(conn.sock.fileno())
        self.by_fd.pop(conn.sock.fileno(), None)

    def run(self, duration: float, timeout: float = 10.0) -> float:
        self.reset_counters()
        started = time.monotonic()
        stop_at, give_up = started + duration, started + duration + timeout
        for conn in self.conns:
            for stream in conn.streams.values():
                self.start_message(stream)
            self.flush(conn)
        while True:
            now = time.monotonic()
            more = now < stop_at
            busy = any(s.busy for c in self.conns for s in c.streams.values())
            if (not more and not busy) or now >= give_up or not self.by_fd:
                break
            for fd, ev in self.epoll.poll(min(stop_at if more else give_up, give_up) - now):
                conn = self.by_fd.get(fd)
                if conn is None:
                    continue
                if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    self.receive(conn, more)
                if fd in self.by_fd:
                    self.flush(conn)
        return time.monotonic() - started

    def close_all(self) -> None:
        for conn in self.conns:
            try:
                conn.sock.close()
            except OSError:
                pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen_h2ws", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="wss://HOST:PORT/ws (TLS, ALPN h2)")
    ap.add_argument("--conns", type=int, default=64, help="WebSocket streams in all")
    ap.add_argument("--streams", type=int, default=8, help="streams per HTTP/2 connection")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connect-timeout", type=float, default=30.0)
    ap.add_argument("--standalone", action="store_true")
    args = ap.parse_args(argv)
    require_loopback(urlsplit(args.url).hostname or "127.0.0.1")
    gen = LoadGen(args.url, args.size, args.streams)
    opened, failed, took = gen.open_all(args.conns, args.connect_timeout)
    emit({"event": "ready", "connected": opened, "failed": failed, "connect_s": took, "notes": gen.errors})
    try:
        while True:
            command = "go" if args.standalone else sys.stdin.readline().strip()
            if command != "go":
                break
            elapsed = gen.run(args.duration)
            emit({"event": "result", "mode": "go", "elapsed": elapsed, "messages": gen.completed,
                  "payload_bytes": gen.completed * args.size, "dropped": gen.dropped,
                  "mismatches": gen.mismatches,
                  "still_busy": sum(1 for c in gen.conns for s in c.streams.values() if s.busy),
                  "hist": gen.hist, "notes": gen.errors})
            if args.standalone:
                break
    finally:
        gen.close_all()


if __name__ == "__main__":
    main()
