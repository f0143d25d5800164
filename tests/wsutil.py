"""Helpers for the tunnel tests (issue #4): raw WebSocket frames, raw HTTP heads,
a raw-socket backend, a module-scoped proxy, the bundled bench backend as a process.

Everything here talks plain sockets, so a test can control exactly which bytes go in
which write (early bytes behind a head, half-close, resets)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

from conftest import ROOT, Proxy, running_proxy, wait_for  # noqa: F401 - running_proxy is re-exported

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEAD_END = b"\r\n\r\n"

# The websockets library client with nothing between it and the proxy: no HTTP proxy
# from the environment, no keepalive pings that would count as tunnel traffic.
CLIENT_OPTIONS = {"proxy": None, "ping_interval": None, "open_timeout": 10, "close_timeout": 5}


# == proxies shared by a module ================================================================


def tunnel_lines(proxy: Proxy, marker: str) -> list[str]:
    """Access-log lines of requests whose target contains `marker`."""
    return [line for line in proxy.access_lines() if marker in line]


def total_tunnels(proxy: Proxy) -> int:
    status = proxy.status()
    return sum(w["tunnels"] for w in status["workers"])


# == WebSocket frames (RFC 6455 §5.2) ==========================================================
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def frame(payload: bytes, opcode: int = OP_BINARY, masked: bool = True, fin: bool = True) -> bytes:
    """One frame; clients mask (masked=True), servers do not."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def close_frame(code: int, reason: str = "", masked: bool = True) -> bytes:
    return frame(struct.pack("!H", code) + reason.encode(), OP_CLOSE, masked)


def recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    """n bytes, taking what is already in `buf` first (the bytes behind a head)."""
    while len(buf) < n:
        chunk = sock.recv(max(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    data = bytes(buf[:n])
    del buf[:n]
    return data


def read_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame, unmasking if needed."""
    b0, b1 = recv_exact(sock, 2, buf)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2, buf))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8, buf))[0]
    key = recv_exact(sock, 4, buf) if b1 & 0x80 else None
    payload = recv_exact(sock, n, buf)
    return b0 & 0x0F, _mask(payload, key) if key else payload


# == HTTP heads ================================================================================
def read_head(sock: socket.socket, buf: bytearray | None = None) -> tuple[bytes, bytearray]:
    """(head including the blank line, the bytes that came behind it)."""
    buf = bytearray() if buf is None else buf
    while HEAD_END not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF inside a head: {bytes(buf)[:200]!r}")
        buf += chunk
    end = buf.index(HEAD_END) + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head, buf


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def headers_of(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]


def header_values(head: bytes, name: str) -> list[str]:
    return [v for k, v in headers_of(head) if k.lower() == name.lower()]


def tokens(head: bytes, name: str) -> set[str]:
    return {t.strip().lower() for v in header_values(head, name) for t in v.split(",") if t.strip()}


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def upgrade_request(path: str, upgrade: str = "websocket", host: str = "proxy.test", key: str | None = None,
                    connection: str = "Upgrade", extra: str = "") -> bytes:
    """An upgrade request head; a WebSocket one carries the Sec-WebSocket-* pair."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", f"Upgrade: {upgrade}", f"Connection: {connection}"]
    if upgrade.lower() == "websocket":
        lines += [f"Sec-WebSocket-Key: {key or ws_key()}", "Sec-WebSocket-Version: 13"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def http_response_body(sock: socket.socket, head: bytes, buf: bytearray) -> bytes:
    """The body of a Content-Length response (what the proxy answers here)."""
    length = int(header_values(head, "Content-Length")[0])
    return recv_exact(sock, length, buf)


def recv_until_eof(sock: socket.socket, buf: bytearray | None = None, limit: float = 10.0) -> bytes:
    out = bytearray(buf or b"")
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk


def is_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closed (EOF or reset) within `timeout`, ignoring data."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


# == a raw backend ==============================================================================
class RawBackend:
    """A TCP server in a thread; every connection runs `handler(conn, head, rest, backend)`
    in its own thread after its request head has been read.  `heads` records every head."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        self.errors: list[BaseException] = []
        self.results: dict = {}
        self.events: dict[str, threading.Event] = {}
        self.closing = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def event(self, name: str) -> threading.Event:
        return self.events.setdefault(name, threading.Event())

    def url(self, scheme: str = "ws", path: str = "/") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _accept_loop(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        try:
            head, rest = read_head(conn)
            self.heads.append(head)
            self.handler(conn, head, rest, self)
        except BaseException as exc:   # reported by the test through .errors
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.closing = True
        self.sock.close()


def switch_response(upgrade: str, request_head: bytes | None = None, extra: str = "") -> bytes:
    """A 101 for `upgrade`; for websocket, with the accept value for the request's key."""
    lines = ["HTTP/1.1 101 Switching Protocols", f"Upgrade: {upgrade}", "Connection: Upgrade"]
    keys = header_values(request_head, "Sec-WebSocket-Key") if request_head is not None else []
    if upgrade.lower() == "websocket" and keys:
        lines.append(f"Sec-WebSocket-Accept: {ws_accept(keys[0])}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def upgrade_of(head: bytes) -> str | None:
    values = header_values(head, "Upgrade")
    return values[0] if values else None


def echo_after_101(conn: socket.socket, head: bytes, rest: bytearray, backend: RawBackend) -> None:
    """Answer 101 with the protocol asked for, then echo every byte until EOF."""
    conn.sendall(switch_response(upgrade_of(head) or "websocket", head))
    echo(conn, rest)


def echo(conn: socket.socket, rest: bytearray) -> None:
    """Echo `rest`, then every byte until EOF."""
    if rest:
        conn.sendall(rest)
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


# == the bundled backend as a process ==========================================================
class BenchBackend:
    """`python -m bench.backends` (raw epoll, its own process): GET / demo page, /ws echo."""

    def __init__(self, directory: str):
        self.log = open(os.path.join(directory, "bench-backend.log"), "w+b")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.backends", "--host", "127.0.0.1", "--port", "0"],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"bench backend exited: {self.output()}")
            m = re.search(r"listening on https?://[^:\s]+:(\d+)", self.output())
            return int(m.group(1)) if m else None
        self.port = wait_for(listening, 15, 0.05, "bench backend listening")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
