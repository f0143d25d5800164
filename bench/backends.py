"""The bundled backend: fixed HTTP responses and a streaming WebSocket echo.

Every benchmark peer (and the README demo) proxies to this one server, so it has to be
faster than any proxy put in front of it: one process (or ``--processes N`` forked
copies, each with its own ``SO_REUSEPORT`` socket on the same port), raw non-blocking
sockets and ``select.epoll``, no asyncio, one preallocated receive buffer per process.

    GET /small   100-byte body                 GET /64k   65,536-byte body
    GET /        the demo page (demo_page.html) GET /ws    WebSocket echo (RFC 6455)

HTTP/1.1 keep-alive with pipelining: every complete request in a read is answered in one
write. The WebSocket echo streams: a data frame's header is re-sent unmasked as soon as it
has arrived, and its payload is unmasked and sent back as the bytes come in, so a 1 MiB
message never sits whole in memory. Fragmentation is echoed as received. Ping is answered
with pong, close with close. A connection whose echo the client does not read stops being
read (back-pressure) until its output drains.

    python -m bench.backends --host 127.0.0.1 --port 0 [--processes N] [--tls-cert C --tls-key K]

prints ``listening on http://HOST:PORT`` (or https) once it accepts connections.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import os
import resource
import select
import signal
import socket
import ssl
import struct
import sys
from pathlib import Path

try:  # C unmasking (websockets' speedups): ~5 us per 64 KiB
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - depends on the environment
    _c_apply_mask = None
try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

RECV_SIZE = 256 * 1024
TLS_RECORD = 16 * 1024
HIGH_WATER = 1024 * 1024  # pending output above which a connection stops being read
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024  # request bodies are read and dropped; bigger ones are refused
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

IN, OUT, ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP

DEMO_PAGE = Path(__file__).with_name("demo_page.html")


def apply_mask(data, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3)."""
    if _c_apply_mask is not None:
        return _c_apply_mask(data, mask)
    n = len(data)
    if _np is not None and n >= 64:
        key = _np.frombuffer((mask * ((n >> 2) + 1))[:n], dtype=_np.uint8)
        return (_np.frombuffer(data, dtype=_np.uint8) ^ key).tobytes()
    return bytes(b ^ mask[i & 3] for i, b in enumerate(bytes(data)))


def http_response(status: str, body: bytes, ctype: str = "text/plain", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode("latin-1") + body


def add_header(response: bytes, line: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    return head + b"\r\n" + line + b"\r\n\r\n" + body


def demo_page() -> bytes:
    """The page; `python -m demo` sets MPM_DEMO_STATUS_URL so it links to the proxy's status page."""
    try:
        page = DEMO_PAGE.read_bytes()
    except OSError:
        return b"<!doctype html><title>demo</title><p>bench/demo_page.html is missing</p>"
    status = os.environ.get("MPM_DEMO_STATUS_URL", "").replace('"', "%22").replace("<", "%3C")
    if status:
        link = (f'<p><a id="status" href="{status}">Server status</a>: the proxy\'s workers, connections and '
                f'tunnels (its admin listener also serves /metrics and /healthz)</p>')
        page = page.replace(b"<!--status-link-->", link.encode())
    return page


class Responses:
    """Every HTTP answer this server gives, built once: the hot path only concatenates."""

    def __init__(self) -> None:
        page = demo_page()
        self.by_path = {
            b"/small": http_response("200 OK", b"x" * 99 + b"\n"),
            b"/64k": http_response("200 OK", b"x" * 65535 + b"\n", "application/octet-stream"),
            b"/": http_response("200 OK", page, "text/html; charset=utf-8"),
            b"/index.html": http_response("200 OK", page, "text/html; charset=utf-8"),
        }
        self.not_found = http_response("404 Not Found", b"not found\n")
        self.bad_request = http_response("400 Bad Request", b"bad request\n", extra="Connection: close\r\n")
        self.too_large = http_response("413 Content Too Large", b"request too large\n",
                                       extra="Connection: close\r\n")
        self.no_chunked = http_response("501 Not Implemented", b"chunked request bodies are not supported\n",
                                        extra="Connection: close\r\n")
        self.upgrade_required = http_response(
            "426 Upgrade Required", b"websocket only\n",
            extra="Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")


def ws_accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


def ws_header(b0: int, length: int) -> bytes:
    """A server frame header: same FIN/RSV/opcode byte, unmasked length."""
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack("!BBH", b0, 126, length)
    return struct.pack("!BBQ", b0, 127, length)


def parse_head(head: bytes):
    """Request line and the few headers this server looks at, lower-cased. None if malformed."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t"):
            return None
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


class Connection:
    """One accepted client: HTTP/1.1 until a 101, then a WebSocket echo."""

    __slots__ = ("server", "sock", "fd", "out", "inbuf", "websocket", "closing", "events", "tls_ready", "tls_socket", "replies",
                 "ws_left", "ws_mask", "ws_off")

    def __init__(self, server: Server, sock: socket.socket, tls: bool) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.out = bytearray()    # bytes accepted for sending but not yet sent
        self.replies: list = []   # what the bytes just read call for, written at once (write_replies)
        self.inbuf = b""          # an incomplete request head or frame header carried to the next read
        self.websocket = False
        self.closing = False      # send what is queued, then close
        self.events = IN
        self.tls_ready = not tls
        self.tls_socket = tls
        self.ws_left = 0          # payload bytes of the current data frame still to stream
        self.ws_mask = b""
        self.ws_off = 0           # position in the mask of the next payload byte

    # -- events -----------------------------------------------------------------------------------

    def on_event(self, ev: int) -> None:
        if not self.tls_ready:
            return self.handshake()
        if ev & OUT:
            self.flush()
        if ev & (IN | ERR) and not self.closing and self.fd >= 0:
            self.read()
        if self.fd >= 0:
            self.update_events()

    def handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.set_events(IN)
        except ssl.SSLWantWriteError:
            return self.set_events(OUT)
        except (ssl.SSLError, OSError):
            return self.close()
        self.tls_ready = True
        self.read()
        if self.fd >= 0:
            self.update_events()

    def read(self) -> None:
        """Read what has arrived, answer it, and write the answers at once.

        Plain sockets: one recv per readiness event (level-triggered epoll calls again for the
        rest). TLS: OpenSSL hands out one record (at most 16 KiB) per call and epoll cannot see
        what it has buffered, so full records are gathered until it would block (or the buffer
        is full).
        """
        view = self.server.view
        n = 0
        eof = False
        while n < RECV_SIZE:
            try:
                got = self.sock.recv_into(view[n:])
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError):
                break
            except (OSError, ssl.SSLError):
                return self.close()
            if got == 0:
                eof = True
                break
            n += got
            # A short TLS record with nothing decrypted behind it: the sender paused (a small
            # message); asking again would only raise SSLWantReadError.
            if not self.tls_socket or (got < TLS_RECORD and not self.sock.pending()):
                break
        if n:
            data = view[:n]
            if self.inbuf:
                data = self.inbuf + data
                self.inbuf = b""
            if self.websocket:
                self.ws_feed(data)
            else:
                self.http_feed(data)
            self.write_replies()
            if self.fd < 0:
                return
        if eof:
            if not self.out:
                return self.close()
            self.closing = True   # the peer half-closed: finish sending what we owe it
        if self.closing and not self.out:
            self.close()

    def write_replies(self) -> None:
        """Send the replies straight from their own buffers (one sendmsg); keep only what did not fit.

        The common case - nothing queued, the socket has room - copies no byte in Python:
        a 256 KiB unmasked chunk goes from apply_mask's result to the kernel.
        """
        pieces, self.replies = self.replies, []
        if not pieces or self.fd < 0:
            return
        if self.out:
            for piece in pieces:
                self.out += piece
            return
        sent = 0
        try:
            if self.tls_socket or len(pieces) > 64:
                pieces = [b"".join(pieces)] if len(pieces) > 1 else pieces
                sent = self.sock.send(pieces[0])
            else:
                sent = self.sock.sendmsg(pieces)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError, InterruptedError):
            pass
        except (OSError, ssl.SSLError):
            return self.close()
        for piece in pieces:
            if sent >= len(piece):
                sent -= len(piece)
                continue
            self.out += memoryview(piece)[sent:] if sent else piece
            sent = 0

    def flush(self) -> None:
        out = self.out
        while out:
            try:
                sent = self.sock.send(out)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError, InterruptedError):
                break
            except (OSError, ssl.SSLError):
                return self.close()
            del out[:sent]
        if not out and self.closing:
            self.close()

    def update_events(self) -> None:
        if self.closing:
            want = OUT
        elif len(self.out) > HIGH_WATER:
            want = OUT          # back-pressure: read again once the client has taken its echo
        elif self.out:
            want = IN | OUT
        else:
            want = IN
        self.set_events(want)

    def set_events(self, want: int) -> None:
        if want != self.events:
            self.events = want
            self.server.epoll.modify(self.fd, want)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.server.forget(self)
        try:
            self.sock.close()
        except OSError:
            pass
        self.fd = -1

    # -- HTTP ---------------------------------------------------------------------------------------

    def http_feed(self, data) -> None:
        """Answer every complete request in ``data``; keep an incomplete one for the next read."""
        data = bytes(data)
        responses = self.server.responses
        pos = 0
        while not self.closing:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(data) - pos > MAX_HEAD:
                    return self.fail(responses.too_large)
                self.inbuf = data[pos:]
                return
            start = pos
            request = parse_head(data[pos:end])
            pos = end + 4
            if request is None:
                return self.fail(responses.bad_request)
            method, target, version, headers = request
            if b"transfer-encoding" in headers:
                return self.fail(responses.no_chunked)
            length = headers.get(b"content-length", b"0")
            if not length.isdigit():
                return self.fail(responses.bad_request)
            if int(length) > MAX_BODY:
                return self.fail(responses.too_large)
            if int(length):  # a body this server has no use for: skip it once it is all here
                if len(data) - pos < int(length):
                    self.inbuf = data[start:]
                    return
                pos += int(length)
            path = target.split(b"?", 1)[0]
            connection = headers.get(b"connection", b"").lower()
            if b"upgrade" in headers and path == b"/ws":
                return self.ws_open(headers, data[pos:])
            if path == b"/ws":
                self.replies.append(responses.upgrade_required)
                continue
            response = responses.by_path.get(path, responses.not_found)
            if method == b"HEAD":
                response = response[: response.index(b"\r\n\r\n") + 4]
            if b"close" in connection or (version == b"HTTP/1.0" and b"keep-alive" not in connection):
                self.replies.append(add_header(response, b"Connection: close"))
                self.closing = True
            elif version == b"HTTP/1.0":
                self.replies.append(add_header(response, b"Connection: keep-alive"))
            else:
                self.replies.append(response)

    def fail(self, response: bytes) -> None:
        self.replies.append(response)
        self.closing = True

    # -- WebSocket ----------------------------------------------------------------------------------

    def ws_open(self, headers: dict, rest: bytes) -> None:
        key = headers.get(b"sec-websocket-key")
        if headers.get(b"upgrade", b"").lower() != b"websocket" or not key:
            return self.fail(self.server.responses.bad_request)
        if headers.get(b"sec-websocket-version") != b"13":
            self.replies.append(self.server.responses.upgrade_required)
            self.closing = True
            return
        self.replies.append(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + ws_accept(key) + b"\r\n\r\n")
        self.websocket = True
        if rest:
            self.ws_feed(memoryview(rest))

    def ws_feed(self, data) -> None:
        """Echo the frames in ``data``, streaming data-frame payloads as they arrive."""
        out = self.replies
        n = len(data)
        pos = 0
        while pos < n:
            if self.ws_left:
                take = min(self.ws_left, n - pos)
                off = self.ws_off
                mask = self.ws_mask if off == 0 else self.ws_mask[off:] + self.ws_mask[:off]
                out.append(apply_mask(data[pos:pos + take], mask))
                self.ws_left -= take
                self.ws_off = (off + take) & 3
                pos += take
                continue
            if n - pos < 2:
                break
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            hlen = 2 + (2 if length == 126 else 8 if length == 127 else 0) + 4
            if not b1 & 0x80:
                return self.ws_close(1002)  # a client frame must be masked
            if n - pos < hlen:
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2:pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
            mask = bytes(data[pos + hlen - 4:pos + hlen])
            opcode = b0 & 0x0F
            if opcode >= OP_CLOSE:  # control frames are short and whole: wait for all of one
                if length > 125:
                    return self.ws_close(1002)
                if n - pos < hlen + length:
                    break
                payload = apply_mask(data[pos + hlen:pos + hlen + length], mask) if length else b""
                pos += hlen + length
                if opcode == OP_PING:
                    out.append(ws_header(0x80 | OP_PONG, length) + payload)
                elif opcode == OP_CLOSE:
                    return self.ws_close(payload[:2])
                continue
            out.append(ws_header(b0, length))
            self.ws_left, self.ws_mask, self.ws_off = length, mask, 0
            pos += hlen
        if pos < n:
            self.inbuf = bytes(data[pos:])

    def ws_close(self, code) -> None:
        payload = code if isinstance(code, bytes) else code.to_bytes(2, "big")
        self.replies.append(ws_header(0x80 | OP_CLOSE, len(payload)) + payload)
        self.closing = True


class Server:
    """One process's accept-and-serve loop over one listening socket."""

    def __init__(self, listener: socket.socket, tls: ssl.SSLContext | None, stop_fd: int = -1) -> None:
        self.listener = listener
        self.tls = tls
        self.stop_fd = stop_fd
        self.epoll = select.epoll()
        self.conns: dict[int, Connection] = {}
        self.buf = bytearray(RECV_SIZE)
        self.view = memoryview(self.buf)
        self.responses = Responses()
        self.accepting = True

    def forget(self, conn: Connection) -> None:
        self.conns.pop(conn.fd, None)
        try:
            self.epoll.unregister(conn.fd)
        except OSError:
            pass

    def accept(self) -> None:
        for _ in range(64):
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.pause_accepting()
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = Connection(self, sock, self.tls is not None)
            self.conns[conn.fd] = conn
            self.epoll.register(conn.fd, IN)
            if self.tls is not None:
                conn.handshake()

    def pause_accepting(self) -> None:
        # Out of descriptors: stop accepting until a connection closes (asyncio does the same).
        if self.accepting:
            self.accepting = False
            self.epoll.unregister(self.listener.fileno())

    def serve_forever(self) -> None:
        lfd = self.listener.fileno()
        self.epoll.register(lfd, IN)
        if self.stop_fd >= 0:
            self.epoll.register(self.stop_fd, IN)
        conns = self.conns
        while True:
            try:
                events = self.epoll.poll(-1 if self.accepting else 0.1)
            except InterruptedError:
                continue
            for fd, ev in events:
                conn = conns.get(fd)
                if conn is not None:
                    conn.on_event(ev)
                elif fd == lfd:
                    self.accept()
                elif fd == self.stop_fd:
                    return
            if not self.accepting:  # retry after a pause: a descriptor may have been freed
                self.accepting = True
                self.epoll.register(lfd, IN)


def raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def make_listener(host: str, port: int, reuseport: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def run(host: str, port: int, processes: int, tls: ssl.SSLContext | None) -> None:
    raise_nofile_limit()
    scheme = "https" if tls else "http"
    if processes <= 1:
        listener = make_listener(host, port, reuseport=False)
        print(f"listening on {scheme}://{host}:{listener.getsockname()[1]}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        Server(listener, tls).serve_forever()
        return
    # One SO_REUSEPORT socket per process, all bound before any fork so the port is known and
    # every queue exists; a pipe from the parent tells the children when it is gone.
    listeners = [make_listener(host, port, reuseport=True)]
    port = listeners[0].getsockname()[1]
    listeners += [make_listener(host, port, reuseport=True) for _ in range(processes - 1)]
    stop_r, stop_w = os.pipe()
    children = []
    for i, listener in enumerate(listeners):
        pid = os.fork()
        if pid == 0:
            os.close(stop_w)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for other in listeners[:i] + listeners[i + 1:]:
                other.close()
            try:
                Server(listener, tls, stop_r).serve_forever()
            finally:
                os._exit(0)
        children.append(pid)
    for listener in listeners:
        listener.close()
    os.close(stop_r)
    print(f"listening on {scheme}://{host}:{port}", flush=True)

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while children:
            pid, _status = os.wait()
            if pid in children:
                children.remove(pid)
    finally:
        os.close(stop_w)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.backends", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001, help="0 = any free port (printed)")
    ap.add_argument("--processes", type=int, default=1, help="forked copies sharing the port (SO_REUSEPORT)")
    ap.add_argument("--tls-cert", help="serve https/wss with this certificate (PEM)")
    ap.add_argument("--tls-key", help="private key for --tls-cert (PEM; default: inside the cert file)")
    args = ap.parse_args(argv)
    try:
        run(args.host, args.port, args.processes, tls_context(args.tls_cert, args.tls_key))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
