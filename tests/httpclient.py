"""A client for the HTTP/1.1 tests.

- `Client` / `get`: h11 on one keep-alive connection to the proxy (an independent HTTP
  implementation, so framing mistakes by the proxy show up as h11 errors).
- `Reader` / `read_raw_response`: a strict hand-written response parser over a raw socket,
  for when a library would hide the bytes (duplicate headers, chunk sizes, trailers).
"""

from __future__ import annotations

import socket

import h11
from proxyproc import Proxy
from rawsock import HEAD_END


# == raw responses =============================================================================
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
