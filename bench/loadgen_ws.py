"""Python WebSocket load generator: raw non-blocking sockets, one epoll loop per process.

Its C twin, bench/loadgen_ws.c, is what the harness runs when gcc can build it (bench/wsgen.py):
it costs a third less CPU per message, which on two cores is CPU left to what is measured.
This one stays as the fallback where there is no compiler, and is what the peers' probes use
in-process (bench/peers.py). The two must keep the same protocol, options and checks.

Frames are built and masked once, up front: a few payload variants of the requested size,
each with its masked client frame and the exact unmasked frame an echo server sends back.
Every connection then keeps one message in flight (send, wait for the whole echo, send the
next), compares every echoed byte with what it expects (a variant that rotates per message,
so a proxy that mixed connections up or replayed stale bytes would be caught), and records
the round trip in a histogram (bench/stats.py).

The harness runs several of these processes and talks to each over stdin/stdout, one JSON
object per line:

    -> {"event": "ready", "connected": N, "failed": K, "notes": [...], ...}    all connections are open (or failed)
    <- "go"      echo/stream: run for --duration seconds (or --count messages), then report
    <- "check"   idle: send one message on every connection and report how many came back
    -> {"event": "result", "messages": ..., "hist": {...}, ...}
    <- "exit"    (or EOF) close everything and exit

    python -m bench.loadgen_ws --url ws://127.0.0.1:8000/ws --conns 64 --size 64 --duration 5
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import os
import resource
import select
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

from bench.stats import bucket, require_loopback

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VARIANTS = 4
CONNECT_IN_FLIGHT = 64          # handshakes in progress at once, so no listen backlog overflows
IN, OUT = select.EPOLLIN, select.EPOLLOUT
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

# Connection states, in the order a connection goes through them.
CONNECTING, TLS_HANDSHAKE, UPGRADING, OPEN, DEAD = range(5)


def client_frame(payload: bytes, mask: bytes) -> bytes:
    """A masked binary frame (RFC 6455 §5.2): FIN + opcode 2, MASK bit, length, key, payload."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "little"))
    return head + mask + masked.to_bytes(n, "little")


def server_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x82, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 127, n)
    return head + payload


class Message:
    """One payload variant: what to send and the exact bytes the echo must be."""

    __slots__ = ("frame", "echo", "payload_len")

    def __init__(self, size: int, seed: int) -> None:
        payload = (hashlib.sha256(b"%d" % seed).digest() * (size // 32 + 1))[:size]
        self.frame = memoryview(client_frame(payload, os.urandom(4)))
        self.echo = server_frame(payload)
        self.payload_len = size


class Conn:
    __slots__ = ("sock", "fd", "index", "state", "events", "head", "key", "seq", "msg", "sent", "got", "t0",
                 "busy", "dropped", "rbuf", "rview")

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.state = CONNECTING
        self.events = OUT
        self.head = b""          # the upgrade response read so far
        self.key = b""
        self.seq = 0
        self.msg: Message | None = None
        self.sent = 0
        self.got = 0
        self.t0 = 0.0
        self.busy = False        # a message is in flight
        self.dropped = False     # closed or broken by the other side while open
        self.rbuf = bytearray()  # the echo being received, compared whole once complete
        self.rview = memoryview(self.rbuf)


class LoadGen:
    def __init__(self, url: str, size: int, tls_verify: bool = False) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "wss" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.tls = None
        if parts.scheme == "wss":
            self.tls = ssl.create_default_context()
            if not tls_verify:
                self.tls.check_hostname = False
                self.tls.verify_mode = ssl.CERT_NONE
        self.messages = [Message(size, seed) for seed in range(VARIANTS)]
        self.epoll = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.errors: list[str] = []
        self.running = False
        self.reset_counters()

    def reset_counters(self) -> None:
        self.completed = 0
        self.bytes_echoed = 0
        self.mismatches = 0
        self.dropped = 0
        self.lost_bytes = 0
        self.hist: dict[int, int] = {}

    def note(self, text: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(text)

    # -- connection set-up ---------------------------------------------------------------------------

    def open_all(self, count: int, timeout: float) -> tuple[int, int, float]:
        """Open ``count`` WebSockets; returns (open, failed, seconds taken)."""
        started = time.monotonic()
        deadline = started + timeout
        next_index = 0
        pending = 0
        failed = 0
        while True:
            while next_index < count and pending < CONNECT_IN_FLIGHT:
                if self.start_connect(next_index):
                    pending += 1
                else:
                    failed += 1
                next_index += 1
            now = time.monotonic()
            if not pending or now >= deadline:
                break
            for fd, ev in self.epoll.poll(min(0.2, deadline - now)):
                conn = self.conns.get(fd)
                if conn is None or conn.state >= OPEN:
                    continue
                self.advance(conn, ev)
                if conn.state == OPEN:
                    pending -= 1
                elif conn.state == DEAD:
                    pending -= 1
                    failed += 1
        for conn in list(self.conns.values()):
            if conn.state < OPEN:
                self.note("connect/upgrade timed out")
                self.kill(conn)
                failed += 1
        failed += count - next_index
        opened = sum(1 for c in self.conns.values() if c.state == OPEN)
        return opened, failed, time.monotonic() - started

    def start_connect(self, index: int) -> bool:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = sock.connect_ex((self.host, self.port))
        conn = Conn(sock, index)
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, OUT)
        if rc not in (0, errno.EINPROGRESS):
            self.note(f"connect: {os.strerror(rc)}")
            self.kill(conn)
            return False
        return True

    def advance(self, conn: Conn, ev: int) -> None:
        """Move a connection through TCP connect, TLS handshake and the HTTP upgrade."""
        try:
            if conn.state == CONNECTING:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                if self.tls is not None:
                    conn.sock = self.tls.wrap_socket(conn.sock, server_hostname=self.host,
                                                     do_handshake_on_connect=False)
                    conn.state = TLS_HANDSHAKE
                else:
                    self.send_upgrade(conn)
            if conn.state == TLS_HANDSHAKE:
                try:
                    conn.sock.do_handshake()
                except ssl.SSLWantReadError:
                    return self.want(conn, IN)
                except ssl.SSLWantWriteError:
                    return self.want(conn, OUT)
                self.send_upgrade(conn)
            elif conn.state == UPGRADING and ev & (IN | select.EPOLLERR | select.EPOLLHUP):
                self.read_upgrade(conn)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.note(f"upgrade: {exc}")
            self.kill(conn)

    def send_upgrade(self, conn: Conn) -> None:
        key = base64.b64encode(os.urandom(16))
        conn.key = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        request = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        conn.sock.sendall(request)  # ~200 bytes into an empty socket buffer: never blocks
        conn.state = UPGRADING
        self.want(conn, IN)

    def read_upgrade(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except WOULD_BLOCK:
            return
        if not data:
            raise ValueError("closed during the upgrade")
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.head) > 16384:
                raise ValueError("upgrade response head too long")
            return
        lines = conn.head[:end].split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 101"):
            raise ValueError(f"upgrade refused: {lines[0].decode('latin-1')}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if headers.get(b"sec-websocket-accept") != conn.key:
            raise ValueError("bad Sec-WebSocket-Accept")
        if len(conn.head) > end + 4:
            raise ValueError("data before the first message")
        conn.head = b""
        conn.rbuf = bytearray(len(self.messages[0].echo))
        conn.rview = memoryview(conn.rbuf)
        conn.state = OPEN

    # -- the echo loop -------------------------------------------------------------------------------

    def want(self, conn: Conn, events: int) -> None:
        if conn.events != events:
            conn.events = events
            self.epoll.modify(conn.fd, events)

    def kill(self, conn: Conn) -> None:
        if conn.state == OPEN and (conn.busy or self.running):
            conn.dropped = True
            self.dropped += 1
            if conn.busy and conn.msg is not None:
                echoed_payload = max(0, conn.got - (len(conn.msg.echo) - conn.msg.payload_len))
                self.lost_bytes += conn.msg.payload_len - echoed_payload
        conn.state = DEAD
        conn.busy = False
        self.conns.pop(conn.fd, None)
        try:
            self.epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def start_message(self, conn: Conn) -> None:
        conn.msg = self.messages[(conn.index + conn.seq) % VARIANTS]
        conn.seq += 1
        conn.sent = conn.got = 0
        conn.busy = True
        conn.t0 = time.perf_counter()
        self.send_more(conn)

    def send_more(self, conn: Conn) -> None:
        frame = conn.msg.frame
        while conn.sent < len(frame):
            try:
                conn.sent += conn.sock.send(frame[conn.sent:])
            except WOULD_BLOCK:
                return self.want(conn, IN | OUT)
            except (OSError, ssl.SSLError) as exc:
                self.note(f"send: {exc}")
                return self.kill(conn)
        self.want(conn, IN)

    def receive(self, conn: Conn) -> bool:
        """Read what has arrived; True when the message in flight has fully come back (and matched)."""
        if not conn.busy:  # nothing is owed to us: anything readable is an error or a close
            conn.got = 0
        echo = conn.msg.echo if conn.msg is not None else b""
        want = len(echo)
        while True:
            try:
                n = conn.sock.recv_into(conn.rview[conn.got:], max(want - conn.got, 1))
            except WOULD_BLOCK:
                return False
            except (OSError, ssl.SSLError) as exc:
                self.note(f"recv: {exc}")
                self.kill(conn)
                return False
            if n == 0:
                self.note("closed by the other side")
                self.kill(conn)
                return False
            if not conn.busy:
                self.mismatches += 1
                self.note("bytes arrived with no message in flight")
                self.kill(conn)
                return False
            conn.got += n
            self.bytes_echoed += n
            if conn.got == want:
                if conn.rbuf != echo:  # one memcmp per message
                    self.mismatches += 1
                    self.note("echo differs from the message sent")
                    self.kill(conn)
                    return False
                return True
            if self.tls is None:   # TLS: OpenSSL returns one record per call; read on until it would block
                return False

    def finish_message(self, conn: Conn) -> None:
        rtt = time.perf_counter() - conn.t0
        b = bucket(rtt)
        self.hist[b] = self.hist.get(b, 0) + 1
        self.completed += 1
        conn.busy = False

    def run(self, duration: float, count: int, check: bool = False, timeout: float = 10.0) -> float:
        """Echo for ``duration`` seconds or ``count`` messages; ``check``: one message per connection.

        When time is up no new message starts, and the ones in flight are waited for (and
        counted), so that a message cut short at the end is never mistaken for one lost.
        """
        self.reset_counters()
        self.running = True
        started = time.monotonic()
        stop_at = started + (0.0 if check else duration)
        give_up = max(stop_at, started) + timeout
        limit = count or (1 << 62)
        for conn in list(self.conns.values()):
            if conn.state == OPEN and not conn.busy:
                self.start_message(conn)
        conns = self.conns
        while conns:
            now = time.monotonic()
            more = now < stop_at and self.completed < limit
            if not more and not any(c.busy for c in conns.values()):
                break
            if now >= give_up:
                self.note(f"{sum(1 for c in conns.values() if c.busy)} echoes still missing after {timeout} s")
                break
            for fd, ev in self.epoll.poll(min(stop_at if more else give_up, give_up) - now):
                conn = conns.get(fd)
                if conn is None:
                    continue
                if ev & OUT and conn.busy:
                    self.send_more(conn)
                if conn.state == OPEN and ev & (IN | select.EPOLLERR | select.EPOLLHUP) and self.receive(conn):
                    self.finish_message(conn)
                    if more and self.completed < limit:
                        self.start_message(conn)
        self.running = False
        return time.monotonic() - started

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            conn.state = DEAD
            try:
                conn.sock.close()
            except OSError:
                pass
        self.conns.clear()


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen_ws", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="ws://HOST:PORT/ws or wss://...")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="payload bytes per message")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of echoing after 'go'")
    ap.add_argument("--count", type=int, default=0, help="stop after this many echoes (0 = duration only)")
    ap.add_argument("--connect-timeout", type=float, default=30.0)
    ap.add_argument("--standalone", action="store_true", help="do not wait for 'go' on stdin; run and exit")
    args = ap.parse_args(argv)

    require_loopback(urlsplit(args.url).hostname or "127.0.0.1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gen = LoadGen(args.url, args.size)
    opened, failed, took = gen.open_all(args.conns, args.connect_timeout)
    emit({"event": "ready", "connected": opened, "failed": failed, "connect_s": took, "notes": gen.errors})
    try:
        while True:
            command = "go" if args.standalone else sys.stdin.readline().strip()
            if command in ("go", "check"):
                check = command == "check"
                elapsed = gen.run(args.duration, args.count, check=check)
                emit({"event": "result", "mode": command, "elapsed": elapsed, "messages": gen.completed,
                      "bytes_echoed": gen.bytes_echoed, "payload_bytes": gen.completed * args.size,
                      "open_at_end": sum(1 for c in gen.conns.values() if c.state == OPEN),
                      "dropped": gen.dropped, "lost_bytes": gen.lost_bytes, "mismatches": gen.mismatches,
                      "still_busy": sum(1 for c in gen.conns.values() if c.busy),
                      "hist": gen.hist, "notes": gen.errors})
                if args.standalone:
                    break
            else:  # "exit" or EOF
                break
    finally:
        gen.close_all()


if __name__ == "__main__":
    main()
