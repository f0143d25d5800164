"""A scripted raw-socket backend: every accepted connection runs a plain function,
`handler(conn: RawConn)`, in its own thread, so a test decides exactly which bytes go out
when (garbage, resets, stalls, streaming, a 101 and a tunnel) and sees exactly which bytes
came in.

A handler reads the request itself (`conn.read_head()`, `conn.read_body(head)`) and writes
with `conn.send()`; for byte-level work on a tunnel it uses `conn.sock`, with `conn.buf`
holding what already came behind the head.  Small handlers used by several modules are here
(`serve_simple`, `echo`, `echo_after_101`); the others are named functions next to their tests.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from rawsock import HEAD_END
from wsutil import switch_response, upgrade_of


class RequestHead:
    """A request head as the backend received it: `.raw` bytes, `.method`, `.target`, `.get(name)`."""

    def __init__(self, line: bytes, headers: list, raw: bytes):
        self.line = line
        parts = line.split(b" ")
        self.method = parts[0].decode("latin-1")
        self.target = parts[1].decode("latin-1") if len(parts) > 1 else ""
        self.version = parts[2].decode("latin-1") if len(parts) > 2 else ""
        self.headers = headers          # [(lower-case str name, str value)]
        self.raw = raw

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None


class RawConn:
    """One connection accepted by a RawBackend."""

    def __init__(self, sock: socket.socket, backend: RawBackend, index: int, timeout: float):
        self.sock = sock
        self.backend = backend
        self.index = index
        self.raw = bytearray()          # every byte received
        self.buf = bytearray()          # received, not consumed yet
        self.eof = threading.Event()    # the proxy closed (EOF or reset seen by a read)
        self.requests: list[RequestHead] = []
        sock.settimeout(timeout)

    def _more(self, timeout: float | None = None) -> bool:
        if self.eof.is_set():
            return False
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError:
            data = b""
        if not data:
            self.eof.set()
            return False
        self.raw += data
        self.buf += data
        return True

    def read_head(self) -> RequestHead | None:
        """The next request head, or None on EOF."""
        while True:
            i = self.buf.find(HEAD_END)
            if i >= 0:
                raw = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                lines = raw[:-4].split(b"\r\n")
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
                head = RequestHead(lines[0], headers, raw)
                self.requests.append(head)
                self.backend.requests.append(head)
                return head
            if not self._more():
                return None

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            if not self._more():
                raise EOFError("EOF in a line")

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise EOFError("EOF in a body")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_body(self, head: RequestHead) -> bytes:
        te = (head.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    return body
                body += self.exactly(size)
                self.exactly(2)
        length = head.get("content-length")
        return self.exactly(int(length)) if length else b""

    def take_buffered(self) -> bytes:
        """What was received but not consumed yet (the bytes that came behind a head)."""
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def wait_eof(self, timeout: float) -> bool:
        """Read (and drop into .raw) until the proxy closes; True if it did within `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.eof.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._more(left)
            except TimeoutError:
                return False
        return True


def respond(status: int = 200, body: bytes = b"", headers=(), reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    hdrs = list(headers)
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs) \
            and status not in (204, 304) and status >= 200:
        hdrs.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def serve_simple(conn: RawConn, answer=None) -> None:
    """Keep-alive loop: read each request (head + body) and send `answer(head, body)` bytes."""
    answer = answer or (lambda head, body: respond(200, b"raw:" + head.target.encode("latin-1")))
    while True:
        head = conn.read_head()
        if head is None:
            return
        body = conn.read_body(head)
        conn.send(answer(head, body))


def echo(conn: RawConn) -> None:
    """Echo what already came behind the head, then every byte until EOF."""
    data = conn.take_buffered()
    if data:
        conn.sock.sendall(data)
    while True:
        data = conn.sock.recv(65536)
        if not data:
            return
        conn.sock.sendall(data)


def echo_after_101(conn: RawConn) -> None:
    """Read a head, answer 101 with the protocol it asks for, then echo every byte until EOF."""
    head = conn.read_head()
    if head is None:
        return
    conn.send(switch_response(upgrade_of(head.raw) or "websocket", head.raw))
    echo(conn)


class RawBackend:
    """A threaded raw-socket backend: every accepted connection runs `handler(conn)` in its
    own thread (default: `serve_simple`).

    What it saw: `conns` (RawConn, in accept order), `requests` (RequestHead, in arrival
    order; `heads` has their raw bytes), `errors` (whatever a handler raised).  Handlers can
    leave findings for the test in `results` and signal it with `event(name)`.
    The handler is read at accept time, so a test that owns the backend may replace it."""

    def __init__(self, handler=None, backlog: int = 128, timeout: float = 10.0):
        self.handler = handler or serve_simple
        self.timeout = timeout          # of each accepted socket's blocking calls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.conns: list[RawConn] = []
        self.requests: list[RequestHead] = []
        self.errors: list[BaseException] = []
        self.results: dict = {}
        self.events: dict[str, threading.Event] = {}
        self.closing = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def heads(self) -> list[bytes]:
        return [request.raw for request in self.requests]

    def event(self, name: str) -> threading.Event:
        return self.events.setdefault(name, threading.Event())

    def reset_records(self) -> None:
        self.conns = []
        self.requests = []
        self.errors = []

    def _accept_loop(self) -> None:
        while not self.closing:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            conn = RawConn(sock, self, len(self.conns), self.timeout)
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(self.handler, conn), daemon=True).start()

    def _run(self, handler, conn: RawConn) -> None:
        try:
            handler(conn)
        except Exception as exc:     # a test that cares looks at .errors or at what its handler recorded
            self.errors.append(exc)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closing = True
        self.sock.close()
        for conn in self.conns:
            try:
                conn.sock.close()
            except OSError:
                pass
