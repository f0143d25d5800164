"""A WebSocket load that checks every byte: `python tests/streamer.py PORT CONNECTIONS RATE`.

Opens CONNECTIONS WebSockets to ws://127.0.0.1:PORT/ws (raw sockets, one selector),
prints "ready" once all are open, then sends each connection a numbered message RATE
times a second and checks that every echo comes back, in order, once and intact.  On
SIGTERM it stops sending, waits up to 5 s for the echoes still due, and prints one
JSON line: connections, sent, echoed, errors, closed (connections that ended), and the
longest silence any connection saw between two echoes (the hand-over pause, from outside).
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import socket
import sys
import time

MESSAGE = 48   # bytes per message: "conn:seq" padded


class Conn:
    __slots__ = ("index", "sock", "inbuf", "next_send", "next_echo", "last_echo", "longest_gap", "closed")

    def __init__(self, index: int, port: int):
        self.index = index
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /ws HTTP/1.1\r\nHost: streamer\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:80])
        self.inbuf = bytearray(head.split(b"\r\n\r\n", 1)[1])
        self.sock.setblocking(False)
        self.next_send = self.next_echo = 0
        self.last_echo = time.monotonic()
        self.longest_gap = 0.0
        self.closed = False

    def payload(self, seq: int) -> bytes:
        return f"{self.index}:{seq}:".encode().ljust(MESSAGE, b".")

    def frame(self, seq: int) -> bytes:
        mask = os.urandom(4)
        data = self.payload(seq)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bytes([0x82, 0x80 | len(data)]) + mask + masked


def main() -> int:
    port, count, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    conns = [Conn(i, port) for i in range(count)]
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.monotonic()))
    errors: list = []
    print("ready", flush=True)
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if stopping:
            due = [c for c in conns if not c.closed and c.next_echo < c.next_send]
            if not due or now - stopping[0] > 5:
                break
        elif now >= next_tick:
            next_tick += 1.0 / rate
            for conn in conns:
                if not conn.closed:
                    try:
                        conn.sock.send(conn.frame(conn.next_send))
                        conn.next_send += 1
                    except (BlockingIOError, InterruptedError):
                        pass   # the kernel buffer is full: this tick's message for it is skipped
                    except OSError as exc:
                        conn.closed = True
                        errors.append(f"{conn.index}: send: {exc}")
        for key, _ in selector.select(max(0.0, min(next_tick - time.monotonic(), 0.05))):
            conn = key.data
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                data = b""
                errors.append(f"{conn.index}: recv: {exc}")
            if not data:
                conn.closed = True
                selector.unregister(conn.sock)
                continue
            conn.inbuf += data
            while len(conn.inbuf) >= 2 + MESSAGE:
                if conn.inbuf[0] != 0x82 or conn.inbuf[1] != MESSAGE:
                    errors.append(f"{conn.index}: unexpected frame header {bytes(conn.inbuf[:2])!r}")
                    conn.inbuf.clear()
                    break
                payload = bytes(conn.inbuf[2:2 + MESSAGE])
                del conn.inbuf[:2 + MESSAGE]
                if payload != conn.payload(conn.next_echo):
                    errors.append(f"{conn.index}: expected seq {conn.next_echo}, got {payload[:20]!r}")
                conn.next_echo += 1
                t = time.monotonic()
                conn.longest_gap = max(conn.longest_gap, t - conn.last_echo)
                conn.last_echo = t
    result = {
        "connections": count,
        "sent": sum(c.next_send for c in conns),
        "echoed": sum(c.next_echo for c in conns),
        "closed": sum(c.closed for c in conns),
        "errors": errors[:20],
        "longest_gap_ms": round(max(c.longest_gap for c in conns) * 1000, 1),
    }
    print(json.dumps(result), flush=True)
    for conn in conns:
        conn.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
