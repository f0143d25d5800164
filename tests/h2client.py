"""A blocking HTTP/2 client for the tests, on python-hyper's `h2` (an independent
implementation: the proxy's own conversion code is not used here).

`H2Client` drives one connection: `request()` opens a stream, `pump()` reads frames and
files them by stream (`Stream`: interim heads, head, body, trailers, end, reset code),
`response()` waits for one stream to end.  Received data is acknowledged at once unless
`auto_ack=False` (a client that reads slowly: it acknowledges by hand with `ack`).  The
RFC 8441 helpers open a WebSocket as an extended CONNECT and speak RFC 6455 frames over it."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


class _ClientMachine(h2.connection.H2Connection):
    def _receive_goaway_frame(self, frame):
        """h2 takes no frame after a GOAWAY; RFC 9113 §6.8 lets the streams up to its last stream
        id finish, which is what the reload tests watch: keep receiving."""
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class Stream:
    def __init__(self, stream_id: int):
        self.id = stream_id
        self.interim: list[list] = []
        self.headers: list | None = None
        self.body = bytearray()
        self.trailers: list | None = None
        self.ended = False
        self.reset: int | None = None        # the error code of a RST_STREAM from the server
        self.unacked = 0
        self.done_at = 0.0

    @property
    def finished(self) -> bool:
        return self.ended or self.reset is not None

    @property
    def status(self) -> int | None:
        return int(self.header(":status")) if self.headers else None

    def header(self, name: str) -> str | None:
        for key, value in self.headers or ():
            if key == name:
                return value
        return None


class H2Client:
    def __init__(self, port: int, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                 server_name: str = "localhost", auto_ack: bool = True, timeout: float = 10.0,
                 settings: dict | None = None, source: str | None = None):
        raw = socket.create_connection((host, port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            raw = tls.wrap_socket(raw, server_hostname=server_name)
            assert raw.selected_alpn_protocol() == "h2", raw.selected_alpn_protocol()
        self.sock = raw
        self.auto_ack = auto_ack
        # What a test sends goes out as it is (malformed requests included): no outbound checks.
        self.conn = _ClientMachine(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.streams: dict[int, Stream] = {}
        self.remote_settings: dict = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.flush()

    # -- sending --------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str = "GET", path: str = "/", headers=(), body: bytes | None = None,
                end: bool = True, authority: str = "proxy.test", scheme: str = "https") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path), *headers]
        self.streams[stream_id] = Stream(stream_id)
        self.conn.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.send_data(stream_id, body, end)
        self.flush()
        return stream_id

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Sends as the windows allow, pumping meanwhile."""
        view = memoryview(data)
        while True:
            window = self.conn.local_flow_control_window(stream_id)
            frame = min(window, self.conn.max_outbound_frame_size)
            if frame >= len(view):
                self.conn.send_data(stream_id, bytes(view), end_stream=end)
                break
            if frame > 0:
                self.conn.send_data(stream_id, bytes(view[:frame]))
                view = view[frame:]
            if window <= frame:          # the window is used up: wait for WINDOW_UPDATE
                self.flush()
                self.pump(0.5)
        self.flush()

    def ack(self, stream_id: int) -> None:
        stream = self.streams[stream_id]
        if stream.unacked:
            self.conn.acknowledge_received_data(stream.unacked, stream_id)
            stream.unacked = 0
            self.flush()

    # -- receiving ------------------------------------------------------------------------
    def pump(self, timeout: float = 1.0) -> bool:
        """Read once (up to `timeout`) and file the events; False when the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._event(event)
        self.flush()
        return True

    def _event(self, event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            stream.headers = event.headers
        elif isinstance(event, h2.events.InformationalResponseReceived):
            stream.interim.append(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            stream.body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                stream.unacked += event.flow_controlled_length
        elif isinstance(event, h2.events.TrailersReceived):
            stream.trailers = event.headers
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
            stream.done_at = time.monotonic()
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.reset = event.error_code
                stream.done_at = time.monotonic()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings.update({code: c.new_value for code, c in event.changed_settings.items()})
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def wait(self, predicate, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if not self.pump(min(0.5, max(deadline - time.monotonic(), 0.01))):
                value = predicate()
                if value:
                    return value
                raise AssertionError(f"connection closed while waiting for {what}")
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def response(self, stream_id: int, timeout: float = 10.0) -> Stream:
        stream = self.streams[stream_id]
        self.wait(lambda: stream.finished, timeout, f"stream {stream_id} to end")
        return stream

    def get(self, path: str, **kwargs) -> Stream:
        return self.response(self.request("GET", path, **kwargs))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- RFC 8441 ---------------------------------------------------------------------------
    def websocket(self, path: str, headers=()) -> Stream:
        """An extended CONNECT for a WebSocket; waits for the answer's head."""
        stream_id = self.request("CONNECT", path, [(":protocol", "websocket"), ("sec-websocket-version", "13"),
                                                   *headers], end=False)
        stream = self.streams[stream_id]
        self.wait(lambda: stream.headers is not None or stream.finished, 10, "the extended CONNECT's answer")
        return stream

    def ws_send(self, stream_id: int, payload: bytes, opcode: int = 2) -> None:
        self.send_data(stream_id, ws_frame(payload, opcode))

    def ws_recv(self, stream_id: int, timeout: float = 10.0) -> tuple[int, bytes]:
        stream = self.streams[stream_id]
        parsed = self.wait(lambda: parse_ws_frame(stream.body), timeout, "a WebSocket frame")
        opcode, payload, used = parsed
        del stream.body[:used]
        return opcode, payload


def ws_frame(payload: bytes, opcode: int = 2) -> bytes:
    """A masked, final RFC 6455 frame."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if size < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((key * (size // 4 + 1))[:size], "big")).to_bytes(size, "big")
    return head + key + masked


def parse_ws_frame(buf: bytearray):
    """(opcode, payload, bytes used) of an unmasked server frame at the start of buf, or None."""
    if len(buf) < 2:
        return None
    opcode, size, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if size == 126:
        if len(buf) < 4:
            return None
        size, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif size == 127:
        if len(buf) < 10:
            return None
        size, pos = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < pos + size:
        return None
    return opcode, bytes(buf[pos:pos + size]), pos + size
