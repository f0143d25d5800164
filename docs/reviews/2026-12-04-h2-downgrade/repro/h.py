"""Shared harness for the h2-downgrade repros: a real mpm (1 worker, h2c listener and,
on request, a TLS listener), a raw recording HTTP/1.1 backend, and a raw HTTP/2 client
whose outbound checks are off (so it sends malformed requests as they are).

Run any repro from the reviewer clone:
    cd /tmp/review-h2down && /work/main/.venv/bin/python docs/reviews/2026-12-04-h2-downgrade/repro/NAME.py
Each script arms a SIGALRM timeout and stops the proxy (by pid, Proxy.stop) and its backend."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = HERE
while not os.path.isdir(os.path.join(ROOT, "worker")):
    ROOT = os.path.dirname(ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import h2.config          # noqa: E402
import h2.connection      # noqa: E402
import h2.events          # noqa: E402
import h2.exceptions      # noqa: E402
import hpack              # noqa: E402
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame  # noqa: E402
from proxyproc import Proxy  # noqa: E402

_stoppers = []


def arm(seconds: int = 60) -> None:
    """A hard timeout for the whole script: stop what it started, then exit 2."""
    def fire(*_):
        print(f"TIMEOUT after {seconds}s", flush=True)
        cleanup()
        os._exit(2)
    signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)


def cleanup() -> None:
    while _stoppers:
        try:
            _stoppers.pop()()
        except Exception as exc:      # noqa: BLE001
            print("cleanup:", exc)


atexit.register(cleanup)


# == the backend ==============================================================================
class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.raw = bytearray()
        self.closed = threading.Event()


class Backend:
    """Accepts on 127.0.0.1:0; every connection in a thread; `raw` of each connection is
    every byte it received.  `handler(conn, head, body)` returns the response bytes for
    each request (default: 200 "ok" with Content-Length); the request's body is read by
    Content-Length or chunked (trailers kept in the raw bytes)."""

    def __init__(self, handler=None, read_body: bool = True):
        self.handler = handler or (lambda c, head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.read_body = read_body
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.conns: list[Conn] = []
        self.heads: list[bytes] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        _stoppers.append(self.close)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stopped = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            conn = Conn(sock)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def all_bytes(self) -> bytes:
        return b"".join(b"--- conn %d ---\n" % i + bytes(c.raw) for i, c in enumerate(self.conns))

    def _recv(self, conn, buf) -> bool:
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            conn.closed.set()
            return False
        conn.raw += data
        buf += data
        return True

    def _serve(self, conn) -> None:
        conn.sock.settimeout(15)
        buf = bytearray()
        while True:
            while b"\r\n\r\n" not in buf:
                if not self._recv(conn, buf):
                    return
            end = buf.index(b"\r\n\r\n") + 4
            head = bytes(buf[:end])
            del buf[:end]
            self.heads.append(head)
            body = b""
            lower = head.lower()
            if self.read_body:
                if b"\ntransfer-encoding: chunked" in lower:
                    body = self._chunked(conn, buf)
                    if body is None:
                        return
                elif b"\ncontent-length:" in lower:
                    n = int(lower.split(b"\ncontent-length:")[1].split(b"\r\n")[0])
                    while len(buf) < n:
                        if not self._recv(conn, buf):
                            return
                    body = bytes(buf[:n])
                    del buf[:n]
            answer = self.handler(conn, head, body)
            if answer is None:
                return
            try:
                conn.sock.sendall(answer)
            except OSError:
                return

    def _chunked(self, conn, buf):
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                if not self._recv(conn, buf):
                    return None
            line_end = buf.index(b"\r\n")
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            del buf[:line_end + 2]
            if size == 0:
                while True:      # trailers up to the empty line
                    while b"\r\n" not in buf:
                        if not self._recv(conn, buf):
                            return None
                    line_end = buf.index(b"\r\n")
                    line = bytes(buf[:line_end])
                    del buf[:line_end + 2]
                    if not line:
                        return bytes(body)
            while len(buf) < size + 2:
                if not self._recv(conn, buf):
                    return None
            body += buf[:size]
            del buf[:size + 2]


# == the proxy ================================================================================
def start_proxy(routes, tls: bool = False, **sections) -> Proxy:
    directory = tempfile.mkdtemp(prefix="h2down-")
    proxy = Proxy(directory, routes, workers=1, **sections)
    listen = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    if tls:
        import trustme
        from support import free_port
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        cert.private_key_pem.write_to_path(key_path)
        cert.cert_chain_pems[0].write_to_path(cert_path)
        proxy.tls_port = free_port()
        proxy.ca = ca
        listen.append({"address": f"127.0.0.1:{proxy.tls_port}", "tls": {"cert": cert_path, "key": key_path}})
    proxy.config["listen"] = listen
    proxy.start()
    _stoppers.append(proxy.stop)
    return proxy


# == the HTTP/2 client ========================================================================
class Stream:
    def __init__(self, sid):
        self.id = sid
        self.interim = []
        self.headers = None
        self.body = bytearray()
        self.trailers = None
        self.ended = False
        self.reset = None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def status(self):
        for k, v in self.headers or ():
            if k == b":status":
                return int(v)
        return None

    def summary(self) -> str:
        if self.reset is not None and self.headers is None:
            return f"RST_STREAM code {self.reset}"
        return f"status {self.status()} headers {self.headers} body {bytes(self.body)[:80]!r}" + \
               (f" trailers {self.trailers}" if self.trailers else "") + \
               (f" then RST_STREAM {self.reset}" if self.reset is not None else "")


class Client:
    """One HTTP/2 connection with no outbound validation; `raw_headers` sends a header block
    encoded by hpack directly (any bytes at all)."""

    def __init__(self, port: int, tls_proxy: Proxy | None = None, timeout: float = 5.0):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_proxy is not None:
            ctx = ssl.create_default_context()
            tls_proxy.ca.configure_trust(ctx)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False, normalize_inbound_headers=False))
        self.h2.initiate_connection()
        self.streams: dict[int, Stream] = {}
        self.goaway = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw_headers(self, sid: int, headers, flags=("END_HEADERS",), depends_on=None) -> None:
        """A HEADERS frame built by hand (h2's own HPACK encoder, so the tables stay in step)."""
        frame = HeadersFrame(sid)
        frame.data = self.h2.encoder.encode(headers)
        for flag in flags:
            frame.flags.add(flag)
        if depends_on is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight = depends_on, 16
        self.sock.sendall(frame.serialize())

    def next_id(self) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.streams[sid] = Stream(sid)
        return sid

    def request(self, headers, body: bytes | None = None, end: bool = True, pseudo=None) -> int:
        """`headers` is the whole list (pseudo-header fields included), as bytes pairs."""
        sid = self.next_id()
        self.h2.send_headers(sid, headers, end_stream=end and not body)
        if body:
            self.h2.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def get(self, path=b"/", extra=(), authority=b"example.test") -> int:
        return self.request([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", authority),
                             (b":path", path), *extra])

    def pump(self, until, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline and not self.closed:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                print("client-side h2 refused what the proxy sent:", repr(exc))
                self.closed = True
                break
            for ev in events:
                st = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    st.headers = ev.headers
                elif isinstance(ev, h2.events.InformationalResponseReceived):
                    st.interim.append(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    st.body += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    st.trailers = ev.headers
                elif isinstance(ev, h2.events.StreamEnded):
                    st.ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    if st is not None:
                        st.reset = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = ev
            self.flush()

    def response(self, sid, timeout: float = 5.0) -> Stream:
        st = self.streams[sid]
        self.pump(lambda: st.done, timeout)
        return st

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def show(label, value) -> None:
    print(f"{label}: {value}", flush=True)
