"""Raw bytes on a socket, for when a library would hide them: reading a head and what came
behind it, a response's status and headers, exact reads, reading until the peer closes.

Both sides use these: a test's client socket and a scripted backend's connection."""

from __future__ import annotations

import socket

HEAD_END = b"\r\n\r\n"


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


def status_of(data: bytes) -> int | None:
    """The status code of the first response in `data`, or None when it does not start with one."""
    if not data.startswith(b"HTTP/1."):
        return None
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def count_responses(data: bytes) -> int:
    return data.count(b"HTTP/1.1 ") + data.count(b"HTTP/1.0 ")


def headers_of(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]


def header_values(head: bytes, name: str) -> list[str]:
    return [v for k, v in headers_of(head) if k.lower() == name.lower()]


def tokens(head: bytes, name: str) -> set[str]:
    """The comma-separated tokens of every `name` line, lower-cased (RFC 9110 §5.3: one list)."""
    return {t.strip().lower() for v in header_values(head, name) for t in v.split(",") if t.strip()}


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


def http_response_body(sock: socket.socket, head: bytes, buf: bytearray) -> bytes:
    """The body of a Content-Length response."""
    length = int(header_values(head, "Content-Length")[0])
    return recv_exact(sock, length, buf)


def recv_until_eof(sock: socket.socket, buf: bytearray | None = None, limit: float = 10.0) -> bytes:
    """`buf`, then everything until EOF; a peer that stays open past `limit` s raises TimeoutError."""
    out = bytearray(buf or b"")
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk


def recv_until_close(sock: socket.socket, timeout: float = 3.0, limit: int = 1 << 24) -> tuple[bytes, bool]:
    """Everything until EOF/reset: (data, closed).  closed is False on timeout."""
    sock.settimeout(timeout)
    chunks = []
    size = 0
    try:
        while size < limit:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        return b"".join(chunks), True
    except TimeoutError:
        return b"".join(chunks), False
    return b"".join(chunks), False


def is_closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    """True when the peer closes (EOF or reset) within `timeout` without sending anything more."""
    data, closed = recv_until_close(sock, timeout)
    return closed and not data


def get_status(proxy, path: str = "/", headers: str = "", timeout: float = 5.0) -> int | str:
    """The status of GET `path` on a new connection to `proxy`, or the error met (a proxy with
    no worker serving leaves the connection unanswered until the timeout)."""
    try:
        with proxy.connect(timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n".encode())
            answer = recv_until_eof(sock, limit=timeout)
    except OSError as exc:
        return repr(exc)
    return status_of(answer) or f"no answer ({answer[:40]!r})"
