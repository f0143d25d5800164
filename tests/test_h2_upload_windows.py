"""HTTP/2 request bodies and flow control (review 2026-12-03-tls-h2 #5): uploads to a backend
that stops reading hold their own stream windows, never the connection's, so another upload
on the same connection, to a healthy route, still goes through.  Before the fix each stalled
stream kept up to 64 KiB of the connection's 1 MiB window unacknowledged, and 16 of them left
it at 0: the healthy POST never got a byte out."""

from __future__ import annotations

import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import pytest
from proxyproc import Proxy
from rawbackend import RawBackend, RawConn, respond

STALLED = 16
STALLED_BODY = 8 << 20          # announced by each stalled upload: it never ends
HEALTHY_BODY = 100_000


def _stalled(conn: RawConn) -> None:
    """Reads the head, then nothing until the test ends (its socket buffers fill)."""
    conn.read_head()
    conn.backend.event("done").wait(15)


def _healthy(conn: RawConn) -> None:
    while (head := conn.read_head()) is not None:
        body = conn.read_body(head)
        conn.send(respond(200, b"%d" % len(body)))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    stalled, healthy = RawBackend(_stalled), RawBackend(_healthy)
    # A stalled backend's socket absorbs little, so its streams stall within a second.
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    proxy = Proxy(tmp_path_factory.mktemp("h2win"), [{"path": "/slow/", "to": stalled.url + "/"},
                                                     {"path": "/fast/", "to": healthy.url + "/"}],
                  workers=1, timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    yield proxy
    stalled.event("done").set()
    proxy.stop()
    stalled.close()
    healthy.close()


class _Uploader:
    """An h2 client that sends every pending body as fast as the windows allow."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.pending: dict[int, int] = {}       # stream -> body bytes still to send
        self.statuses: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def post(self, path: str, length: int) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":authority", "proxy.test"),
                                         (":path", path), ("content-length", str(length))])
        self.pending[stream_id] = length
        return stream_id

    def pump(self, seconds: float) -> None:
        machine, end = self.h2, time.monotonic() + seconds
        while time.monotonic() < end:
            for stream_id, left in list(self.pending.items()):
                while (n := min(left, machine.local_flow_control_window(stream_id), 16384)) > 0:
                    machine.send_data(stream_id, b"x" * n)
                    left -= n
                self.pending[stream_id] = left
                if left == 0:
                    machine.end_stream(stream_id)
                    del self.pending[stream_id]
            self.sock.sendall(machine.data_to_send())
            self.sock.settimeout(0.05)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            for event in machine.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    self.statuses[event.stream_id] = dict(event.headers)[b":status"]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(30)
def test_uploads_to_a_stalled_backend_leave_the_other_uploads_of_the_connection_going(env):
    client = _Uploader(env.port)
    try:
        for _ in range(STALLED):
            client.post("/slow/up", STALLED_BODY)
        client.pump(1.5)                        # the stalled streams' windows are all used up
        window = client.h2.outbound_flow_control_window
        healthy = client.post("/fast/up", HEALTHY_BODY)
        started = time.monotonic()
        while time.monotonic() - started < 4 and healthy not in client.statuses:
            client.pump(0.1)
        took = time.monotonic() - started
        print(f"connection window after {STALLED} stalled uploads: {window}; the healthy POST: "
              f"{client.statuses.get(healthy)} after {took:.2f} s, {HEALTHY_BODY - client.pending.get(healthy, 0)} "
              "bytes sent")
        assert client.statuses.get(healthy) == b"200", (window, client.pending.get(healthy))
        # Each stalled stream still holds its own window: only the connection's was given back.
        assert all(client.h2.local_flow_control_window(stream_id) < 16384
                   for stream_id in client.pending if stream_id != healthy)
    finally:
        client.close()
