"""WebSocket and Upgrade on the wire (issue #4): frames (RFC 6455 §5.2), the handshake's
key and accept values, an upgrade request head and a 101 answer, built by hand so a test
controls exactly which bytes go in which write (early bytes behind a head, split heads)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct

from rawsock import header_values, recv_exact

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The websockets library client with nothing between it and the proxy: no HTTP proxy
# from the environment, no keepalive pings that would count as tunnel traffic.
CLIENT_OPTIONS = {"proxy": None, "ping_interval": None, "open_timeout": 10, "close_timeout": 5}


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


# == the handshake ============================================================================
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
