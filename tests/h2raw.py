"""A raw HTTP/2 client for tests that send what h2's own client machine would not (malformed
frames, windows opened a byte at a time): frames built with hyperframe and hpack, frames in
filed by stream."""

from __future__ import annotations

import contextlib
import socket
import time

import hpack
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from proxyproc import Proxy
from rawbackend import RawBackend


@contextlib.contextmanager
def h2c_proxy(directory, handler, **sections):
    """(proxy, backend): a proxy of one worker with an h2c listener, in front of a RawBackend
    that runs `handler` for each connection; both stopped at the end.  `sections`: more of
    the configuration (log={"level": "info"}, say)."""
    backend = RawBackend(handler)
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1, **sections)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    try:
        proxy.start()
        yield proxy, backend
    finally:
        proxy.stop()
        backend.close()


class RawClient:
    """Frames out as built; frames in filed by stream: the status of each response, the
    error code of each RST_STREAM, and a GOAWAY if one came."""

    def __init__(self, port: int, settings: dict | None = None, ack_data: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.statuses: dict[int, int] = {}
        self.resets: dict[int, int] = {}
        self.received: dict[int, int] = {}      # DATA bytes per stream
        self.goaway: int | None = None
        self.closed = False
        self.ack_data = ack_data                # give the connection's window back as DATA comes
        self.buf = b""
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, frame) -> None:
        self.sock.sendall(frame.serialize())

    def headers(self, sid: int, fields, end_stream: bool = True, depends_on: int | None = None) -> None:
        frame = HeadersFrame(sid, self.encoder.encode(fields))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        if depends_on is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight = depends_on, 15
        self.send(frame)

    def get(self, sid: int, path: str, **kwargs) -> None:
        self.headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "proxy.test"), (":path", path)],
                     **kwargs)

    def wait(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert not self.closed and time.monotonic() < deadline, \
                f"statuses {self.statuses}, resets {self.resets}, GOAWAY {self.goaway}, closed {self.closed}"
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
                continue
            self.buf += data
            self._frames()

    def _frames(self) -> None:
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]))
            elif isinstance(frame, HeadersFrame):
                fields = dict(self.decoder.decode(frame.data, raw=True))
                self.statuses[frame.stream_id] = int(fields[b":status"])
            elif isinstance(frame, DataFrame):
                self.received[frame.stream_id] = self.received.get(frame.stream_id, 0) + len(frame.data)
                if self.ack_data and frame.flow_controlled_length:
                    self.send(WindowUpdateFrame(0, window_increment=frame.flow_controlled_length))
            elif isinstance(frame, RstStreamFrame):
                self.resets[frame.stream_id] = frame.error_code
            elif isinstance(frame, GoAwayFrame):
                self.goaway = frame.error_code
