"""Helpers for the HTTP/1.1 proxying tests (issue #3).

- `Client`: an h11 client on one keep-alive connection to the proxy (an independent
  HTTP implementation, so framing mistakes by the proxy show up as h11 errors).
- `read_raw_response` / `recv_until_close`: raw bytes, for when a library would hide them.
- `RawBackend`: a threaded raw-socket backend whose per-connection behaviour is a plain
  function (`handler(conn)`), so a test can script exactly which bytes go out when
  (garbage, resets, stalls, streaming) and see exactly which bytes came in.
- `running_proxy`: one real master shared by a whole module (a start costs ~1 s).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import h11
from conftest import Proxy, running_proxy  # noqa: F401 - running_proxy is re-exported

HEAD_END = b"\r\n\r\n"


# == proxies shared by a module ================================================================


def wait_log(proxy: Proxy, needle: str, timeout: float = 3.0) -> str:
    """The error log once it contains `needle` (logs are flushed once per loop turn)."""
    deadline = time.monotonic() + timeout
    while True:
        text = proxy.error_text()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def wait_access(proxy: Proxy, marker: str, count: int = 1, timeout: float = 3.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in proxy.access_lines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


# == raw client side ===========================================================================
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


class RawResponse:
    def __init__(self, status: int, reason: bytes, version: bytes, headers: list, body: bytes,
                 trailers: list, head: bytes):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers          # [(lower-case name, value)] as bytes
        self.body = body                # de-chunked
        self.trailers = trailers
        self.head = head                # the raw head bytes

    def get(self, name: str) -> bytes | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[bytes]:
        lname = name.lower().encode()
        return [v for k, v in self.headers if k == lname]

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.headers!r} body={self.body[:80]!r}>"


class Reader:
    """A buffered reader over a socket that parses responses strictly, by hand."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        sock.settimeout(timeout)

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            if not self._more():
                raise EOFError(f"EOF in a line: {bytes(self.buf)[:200]!r}")

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise EOFError(f"EOF after {len(self.buf)} of {n} body bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def head(self) -> tuple[int, bytes, bytes, list, bytes]:
        lines = []
        while True:
            line = self.line()
            if not line:
                break
            lines.append(line)
        if not lines:
            raise EOFError("empty head")
        version, status, *reason = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        return int(status), (reason[0] if reason else b""), version, headers, b"\r\n".join(lines) + HEAD_END

    def response(self, method: str = "GET", skip_interim: bool = True) -> RawResponse:
        while True:
            status, reason, version, headers, head = self.head()
            if not (skip_interim and 100 <= status < 200 and status != 101):
                break
        hdict = {}
        for k, v in headers:
            hdict.setdefault(k, v)
        body, trailers = b"", []
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif b"chunked" in hdict.get(b"transfer-encoding", b"").lower():
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self.line()
                        if not line:
                            break
                        name, _, value = line.partition(b":")
                        trailers.append((name.strip().lower(), value.strip()))
                    break
                body += self.exactly(size)
                if self.exactly(2) != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
        elif b"content-length" in hdict:
            body = self.exactly(int(hdict[b"content-length"]))
        else:
            body = self.rest()
        return RawResponse(status, reason, version, headers, body, trailers, head)


def read_raw_response(sock: socket.socket, method: str = "GET", timeout: float = 5.0) -> RawResponse:
    return Reader(sock, timeout).response(method)


def status_of(data: bytes) -> int | None:
    """The status code of the first response in `data`, or None."""
    if not data.startswith(b"HTTP/1."):
        return None
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def count_responses(data: bytes) -> int:
    return data.count(b"HTTP/1.1 ") + data.count(b"HTTP/1.0 ")


# == h11 client ================================================================================
class Response:
    def __init__(self, status: int, headers: list, body: bytes, trailers: list, interim: list):
        self.status = status
        self.headers = headers          # [(lower-case name, value)] as str
        self.body = body
        self.trailers = trailers
        self.interim = interim          # 1xx responses seen before this one

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} body={self.body[:80]!r}>"


class Client:
    """h11 over one connection to the proxy; `request()` can be repeated (keep-alive)."""

    def __init__(self, proxy: Proxy, timeout: float = 5.0):
        self.sock = proxy.connect(timeout)
        self.h = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_request(self, method: str, target: str, headers=(), body: bytes | None = None,
                     host: str = "client.test") -> None:
        hdrs = list(headers)
        if host is not None and not any(k.lower() == "host" for k, _ in hdrs):
            hdrs.insert(0, ("Host", host))
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        self.sock.sendall(self.h.send(h11.Request(method=method, target=target, headers=hdrs)))
        if body:
            self.sock.sendall(self.h.send(h11.Data(data=body)))
        self.sock.sendall(self.h.send(h11.EndOfMessage()))

    def read_response(self) -> Response:
        status, headers, body, trailers, interim = None, [], b"", [], []
        while True:
            event = self.h.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                self.h.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                trailers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
                return Response(status, headers, body, trailers, interim)
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("connection closed before a complete response")

    def request(self, method: str, target: str, headers=(), body: bytes | None = None,
                host: str = "client.test") -> Response:
        if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
            self.h.start_next_cycle()
        self.send_request(method, target, headers, body, host)
        return self.read_response()

    def reusable(self) -> bool:
        return self.h.our_state is h11.DONE and self.h.their_state is h11.DONE


def get(proxy: Proxy, target: str, headers=(), method: str = "GET", body: bytes | None = None,
        host: str = "client.test") -> Response:
    with Client(proxy) as client:
        return client.request(method, target, headers, body, host)


# == raw backend ===============================================================================
class RequestHead:
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

    def __init__(self, sock: socket.socket, backend: RawBackend, index: int):
        self.sock = sock
        self.backend = backend
        self.index = index
        self.raw = bytearray()          # every byte received
        self.buf = bytearray()          # received, not consumed yet
        self.eof = threading.Event()    # the proxy closed (EOF or reset seen by a read)
        self.requests: list[RequestHead] = []
        sock.settimeout(10)

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


class RawBackend:
    """A threaded raw-socket backend: every accepted connection runs `handler(conn)`
    in its own thread (read the connection's attribute at accept time, so a test can
    swap the handler of a backend shared by a module)."""

    def __init__(self, handler=None, backlog: int = 64):
        self.handler = handler or serve_simple
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.conns: list[RawConn] = []
        self.requests: list[RequestHead] = []
        self.errors: list[BaseException] = []
        self.closing = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
            conn = RawConn(sock, self, len(self.conns))
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(self.handler, conn), daemon=True).start()

    def _run(self, handler, conn: RawConn) -> None:
        try:
            handler(conn)
        except (OSError, EOFError, ValueError) as exc:
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
