"""Helpers for the balancer tests (issue #7).

- `Member`: one balancer member as a real server in threads: HTTP/1.1 keep-alive (its
  name in every body) and WebSocket upgrades (a real RFC 6455 echo), on a port that
  survives `kill()` (listener closed, every open connection reset) and `restart()`.
- `balancer_config`: the `balancers:` + `routes:` sections for a list of members.
- `ws_open`: a WebSocket handshake through the proxy, raw sockets (wsutil's frames).
"""

from __future__ import annotations

import socket
import threading

from wsutil import OP_CLOSE, frame, read_frame, read_head, status_of, switch_response, upgrade_request


class Member:
    """A backend that answers `name` to every request and echoes WebSocket messages."""

    def __init__(self, name: str, port: int = 0, status: int = 200):
        self.name = name
        self.status = status                 # what plain HTTP requests get
        self.requests: list[dict] = []       # {"method", "target", "headers" (lower-case), "ws"}
        self.tunnels = 0                     # WebSocket connections open right now
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.port = port
        self._listen()

    def _listen(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.alive = True
        threading.Thread(target=self._accept_loop, args=(self.sock,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept_loop(self, lsock: socket.socket) -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf = bytearray()
        try:
            while True:
                try:
                    head, buf = read_head(conn, buf)
                except ConnectionError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        key, _, value = line.partition(":")
                        headers[key.strip().lower()] = value.strip()
                ws = headers.get("upgrade", "").lower() == "websocket"
                self.requests.append({"method": method, "target": target, "headers": headers, "ws": ws})
                if ws:
                    conn.sendall(switch_response("websocket", head))
                    self._echo(conn, buf)
                    return
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                del buf[:length]
                body = self.name.encode()
                conn.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\n"
                             f"X-Member: {self.name}\r\n\r\n".encode() + (body if method != "HEAD" else b""))
        except OSError:
            return
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def _echo(self, conn: socket.socket, buf: bytearray) -> None:
        with self.lock:
            self.tunnels += 1
        try:
            while True:
                opcode, payload = read_frame(conn, buf)
                if opcode == OP_CLOSE:
                    conn.sendall(frame(payload, OP_CLOSE, masked=False))
                    return
                conn.sendall(frame(payload, opcode, masked=False))
        except (OSError, ConnectionError):
            return
        finally:
            with self.lock:
                self.tunnels -= 1

    def served(self, kind: str = "http") -> int:
        return sum(1 for r in self.requests if r["ws"] == (kind == "ws"))

    def kill(self) -> None:
        """The process dies: nothing listens any more and every connection is reset."""
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked in accept()
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self) -> None:
        self._listen()

    def close(self) -> None:
        if self.alive:
            self.kill()


def members_section(members: list[Member], weights=None, routes: bool = True, **extra) -> dict:
    """One balancer's section; `extra` adds balancer keys (method, sticky, health...)."""
    entries = []
    for i, member in enumerate(members):
        entry = {"url": member.url, "weight": weights[i] if weights else 1}
        if routes:
            entry["route"] = member.name
        entries.append(entry)
    return {**extra, "members": entries}


def ws_open(proxy, path: str = "/ws", headers: str = "") -> tuple[socket.socket, bytes, bytearray]:
    """A WebSocket through the proxy: (socket, 101 head, bytes behind it)."""
    sock = proxy.connect()
    sock.sendall(upgrade_request(path, extra=headers))
    head, rest = read_head(sock)
    assert status_of(head) == 101, head
    return sock, head, rest


def ws_echo(sock: socket.socket, rest: bytearray, message: bytes) -> bytes:
    sock.sendall(frame(message))
    _, payload = read_frame(sock, rest)
    return payload


def ws_close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


class KeepAlive:
    """A plain keep-alive HTTP/1.1 client on one connection to the proxy: (status, headers, body)."""

    def __init__(self, proxy, timeout: float = 10.0):
        self.proxy = proxy
        self.timeout = timeout
        self.sock = None
        self.buf = bytearray()

    def get(self, path: str, headers: str = "", method: str = "GET") -> tuple[int, dict, bytes]:
        if self.sock is None:
            self.sock = self.proxy.connect(self.timeout)
            self.buf = bytearray()
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: proxy.test\r\n{headers}\r\n".encode())
        head, self.buf = read_head(self.sock, self.buf)
        fields = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            if line:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), []).append(value.strip())
        length = 0 if method == "HEAD" else int(fields.get("content-length", ["0"])[0])
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF inside a body")
            self.buf += chunk
        body = bytes(self.buf[:length])
        del self.buf[:length]
        if "close" in ",".join(fields.get("connection", [])).lower():
            self.close()
        return status_of(head), fields, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
