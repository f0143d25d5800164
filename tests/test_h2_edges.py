"""HTTP/2 edges an adversarial review found (each failed before its fix): a client's smaller
INITIAL_WINDOW_SIZE, one stream over the concurrency limit, the client's GOAWAY, our own
answers to HEAD, trailers that come in the head's read, and two RFC 8441 tunnel endings:
END_STREAM before the 200, and a reset while the backend holds the client's bytes."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest
from h2client import H2Client, Stream
from hyperframe.frame import GoAwayFrame, SettingsFrame
from proxyproc import Proxy
from rawbackend import RawBackend, RawConn, respond
from support import free_port, wait_for
from wsutil import switch_response

REFUSED_STREAM, CANCEL = 0x7, 0x8
BIG = bytes(range(256)) * 1600          # 400 KiB: several stream windows
STREAMS = 5                             # limits.http2_streams here


def _app(conn: RawConn) -> None:
    while (head := conn.read_head()) is not None:
        if head.get("upgrade"):
            _upgraded(conn, head)
            return
        body = conn.read_body(head)
        if head.target == "/big":
            conn.send(respond(200, BIG))
        elif head.target == "/gzipped":       # a transfer coding besides chunked (RFC 9112 §7)
            data = gzip.compress(b"hello")
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                      + (b"" if head.method == "HEAD" else b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)))
        elif head.target.startswith("/slow"):
            time.sleep(1.0)
            conn.send(respond(200, b"slow"))
        else:
            conn.send(respond(200, b"%s %s %s" % (head.method.encode(), head.target.encode(), body)))


def _upgraded(conn: RawConn, head) -> None:
    """101, then echo until EOF; the bytes and the EOF are recorded for the test."""
    conn.send(switch_response("websocket", head.raw) + conn.take_buffered())
    received = bytearray()
    while data := conn.sock.recv(65536):
        received += data
        conn.sock.sendall(data)
    conn.backend.results["echoed"] = bytes(received)
    conn.backend.event("eof").set()


class _Stuck:
    """A WebSocket backend that switches and then never reads: its 4 KiB receive buffer and
    then the proxy's send buffer fill, and the proxy holds the client's bytes unacknowledged."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # inherited by accepted sockets
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(switch_response("websocket", head[:head.index(b"\r\n\r\n") + 4]))

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    backend, stuck = RawBackend(_app, timeout=30), _Stuck()
    routes = [{"path": "/down/", "to": f"http://127.0.0.1:{free_port()}/"},
              {"path": "/stuck/", "to": f"ws://127.0.0.1:{stuck.port}/"},
              {"path": "/ws/", "to": f"ws://127.0.0.1:{backend.port}/", "timeout": 20},
              {"path": "/none/", "to": f"http://127.0.0.1:{backend.port}/", "upgrade": "NONE"},
              {"path": "/slowup/", "to": f"http://127.0.0.1:{backend.port}/", "timeout": 1},
              {"path": "/", "to": backend.url + "/"}]
    proxy = Proxy(tmp_path_factory.mktemp("h2edges"), routes, workers=1, limits={"http2_streams": STREAMS})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    yield proxy, backend
    proxy.stop()
    backend.close()
    stuck.close()


@pytest.mark.timeout(60)
def test_a_smaller_initial_window_leaves_a_stream_waiting_not_the_worker_dead(env):
    """RFC 9113 §6.9.2: SETTINGS may take a stream's window below zero; the sender waits for
    WINDOW_UPDATE. It crashed the worker, and every connection on it, with h2's FlowControlError."""
    proxy, _ = env
    worker = proxy.worker_pids()
    bystander = H2Client(proxy.port)
    assert bystander.get("/before").status == 200
    client = H2Client(proxy.port, auto_ack=False)
    stream_id = client.request("GET", "/big")
    stream = client.streams[stream_id]
    client.wait(lambda: len(stream.body) >= 65535, 10, "a window's worth of the body")
    # The client's h2 will not take its own window below zero: the SETTINGS go as raw bytes.
    client.sock.sendall(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65534}).serialize())
    client.pump(0.5)
    client.auto_ack = True
    client.ack(stream_id)                             # the window opens again: the rest comes
    client.response(stream_id, timeout=20)
    assert stream.status == 200 and bytes(stream.body) == BIG
    assert proxy.worker_pids() == worker, "the worker died"
    assert bystander.get("/after").status == 200
    bystander.close()
    client.close()


@pytest.mark.timeout(60)
def test_one_stream_over_the_limit_is_refused_and_the_others_are_served(env):
    """RFC 9113 §5.1.2 and nginx: REFUSED_STREAM for that stream alone. h2's own check made it
    a connection error, and the streams under way were lost with the connection."""
    proxy, _ = env
    client = H2Client(proxy.port)
    # The proxy's SETTINGS are read and acknowledged by hand (its limit applies from the ACK
    # on), so that the client's h2, which never sees them, opens one stream too many.
    client.sock.settimeout(5)
    greeting = client.sock.recv(65536)
    assert SettingsFrame.parse_frame_header(memoryview(greeting[:9]))[0].type == SettingsFrame.type
    assert (SettingsFrame.MAX_CONCURRENT_STREAMS).to_bytes(2, "big") + STREAMS.to_bytes(4, "big") in greeting
    client.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
    time.sleep(0.3)
    ids = [client.request("GET", f"/slow?{i}") for i in range(STREAMS + 1)]
    for stream_id in ids:
        client.response(stream_id, timeout=15)
    streams = [client.streams[i] for i in ids]
    assert [s.reset for s in streams].count(REFUSED_STREAM) == 1
    assert sorted(s.status for s in streams if s.reset is None) == [200] * STREAMS
    assert client.goaway is None and not client.closed
    assert client.get("/after").status == 200
    client.close()


@pytest.mark.timeout(60)
def test_the_clients_goaway_lets_its_streams_finish(env):
    """The client's GOAWAY says it opens no more streams (RFC 9113 §6.8); nginx serves the
    open ones on. They were aborted, logged as 499."""
    proxy, _ = env
    client = H2Client(proxy.port)
    stream_id = client.request("GET", "/slow?goaway")
    # GOAWAY NO_ERROR, last stream 0, as raw bytes: the client's h2 would take no frame after its own.
    client.sock.sendall(GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())
    stream = client.response(stream_id, timeout=10)
    assert stream.status == 200 and bytes(stream.body) == b"slow"
    line = wait_for(lambda: [x for x in proxy.access_lines() if "/slow?goaway" in x], 5)[0]
    assert '" 200 ' in line
    client.close()


@pytest.mark.timeout(60)
def test_our_own_answer_to_head_has_no_body(env):
    """RFC 9110 §9.3.2: the 502 of a dead backend to HEAD ends with its HEADERS frame. It
    carried the error page as DATA, which h2 and curl refuse as a protocol error."""
    proxy, _ = env
    client = H2Client(proxy.port)
    stream = client.response(client.request("HEAD", "/down/x"))
    assert stream.status == 502 and stream.reset is None and stream.ended
    assert int(stream.header("content-length")) > 0 and bytes(stream.body) == b""
    assert client.get("/after").status == 200
    client.close()


@pytest.mark.timeout(60)
def test_trailers_in_the_heads_read_reach_the_backend_as_when_they_come_later(env):
    """Trailers that came with the head, the body and END_STREAM in one read were dropped
    (the body went with a Content-Length); read apart, they went in the last chunk."""
    proxy, backend = env
    client = H2Client(proxy.port)
    for split in (False, True):
        path = f"/trailers/{'split' if split else 'one-read'}"
        stream_id = client.conn.get_next_available_stream_id()
        client.streams[stream_id] = Stream(stream_id)
        client.conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                                             (":path", path), ("te", "trailers")])
        if split:
            client.flush()
            time.sleep(0.2)
        client.conn.send_data(stream_id, b"hello")
        client.conn.send_headers(stream_id, [("x-checksum", "abc")], end_stream=True)
        client.flush()                              # without the split: HEADERS, DATA, trailers in one write
        assert client.response(stream_id).status == 200
        raw = [h for h in backend.heads if path.encode() in h][-1]
        assert b"transfer-encoding: chunked" in raw.lower(), raw
    chunked = [c for c in backend.conns if b"/trailers/one-read" in bytes(c.raw)][0]
    assert b"5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n" in bytes(chunked.raw)
    client.close()


@pytest.mark.timeout(60)
def test_end_stream_before_the_200_half_closes_the_backend(env):
    """The client's END_STREAM (its half-close) sent right behind the extended CONNECT and
    its DATA: the backend sees the bytes and then its EOF, and the tunnel ends at once. The
    backend waited for the route's idle timeout, and the log said tunnel_in=0."""
    proxy, backend = env
    backend.event("eof").clear()
    client = H2Client(proxy.port)
    stream_id = client.request("CONNECT", "/ws/early", [(":protocol", "websocket"), ("sec-websocket-version", "13")],
                               end=False)
    client.conn.send_data(stream_id, b"early!", end_stream=True)
    client.flush()
    started = time.monotonic()
    assert backend.event("eof").wait(10), "the backend never saw the client's half-close"
    assert backend.results["echoed"] == b"early!"
    stream = client.response(stream_id, timeout=10)
    assert stream.status == 200 and stream.reset is None and bytes(stream.body) == b"early!"
    assert time.monotonic() - started < 5
    line = wait_for(lambda: [x for x in proxy.access_lines() if "CONNECT /ws/early" in x], 5)[0]
    assert "tunnel_in=6 " in line and 'end="closed"' in line, line
    client.close()


def _fill(client: H2Client, stream_id: int) -> None:
    """Send on the tunnel until the proxy stops opening its window: the backend holds it."""
    frame = b"w" * 16384
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 0.5:
        window = client.conn.local_flow_control_window(stream_id)
        if window > 0:
            client.conn.send_data(stream_id, frame[:min(window, len(frame))])
            client.flush()
            quiet_since = time.monotonic()
        else:
            client.pump(0.1)


@pytest.mark.timeout(90)
def test_a_reset_tunnel_gives_back_the_window_its_backend_never_took(env):
    """Bytes of a stream that ends still count against the connection's window (RFC 9113
    §6.9): a tunnel reset while its backend held the client's bytes kept them, a stream
    window's worth each time, until uploads on the connection stalled for good. The proxy
    sends WINDOW_UPDATE once half its 1 MiB window is consumed, so what is still out after
    nine such tunnels must stay under half of it."""
    proxy, _ = env
    client = H2Client(proxy.port)
    client.wait(lambda: client.conn.outbound_flow_control_window > 65535, 5, "the connection's window")
    full = client.conn.outbound_flow_control_window
    for i in range(9):
        stream_id = client.request("CONNECT", f"/stuck/{i}", [(":protocol", "websocket"),
                                                              ("sec-websocket-version", "13")], end=False)
        client.wait(lambda stream_id=stream_id: client.streams[stream_id].headers, 5, "the 200")
        _fill(client, stream_id)
        client.conn.reset_stream(stream_id, CANCEL)
        client.flush()
        client.pump(0.2)
    client.pump(0.5)
    outstanding = full - client.conn.outbound_flow_control_window
    assert outstanding < full // 2, f"{outstanding} bytes never acknowledged"
    body = b"u" * 200_000                             # an upload on the same connection still goes
    stream_id = client.request("POST", "/upload", body=body)
    stream = client.response(stream_id, timeout=20)
    assert stream.status == 200 and bytes(stream.body).endswith(body)
    client.close()


@pytest.mark.timeout(60)
def test_a_plain_get_on_an_upgrade_none_route_is_not_tunnelled_over_http2(env):
    """`upgrade: NONE` tunnels an HTTP/1.1 GET without asking (Apache's meaning), but an
    HTTP/2 stream can only become a tunnel by an extended CONNECT (RFC 8441): a plain GET
    stream goes as plain HTTP. It went with Upgrade: websocket, and the backend's 101 made
    the GET a tunnel behind a :status 200."""
    proxy, backend = env
    client = H2Client(proxy.port)
    stream = client.get("/none/plain")
    assert stream.status == 200 and bytes(stream.body) == b"GET /plain "
    head = [h for h in backend.heads if b"GET /plain " in h][-1]
    assert b"upgrade" not in head.lower(), head
    client.close()


@pytest.mark.timeout(60)
def test_an_upload_slower_than_the_routes_timeout_is_not_cut_while_it_flows(env):
    """As over HTTP/1.1 (test_http_bodies): the timeout counts from the last DATA sent on to
    the backend, not from the head; 12 frames 0.25 s apart against a timeout of 1 s."""
    proxy, _ = env
    client = H2Client(proxy.port)
    pieces = [bytes([97 + i]) * 4096 for i in range(12)]
    stream_id = client.request("POST", "/slowup/up", [("content-length", str(4096 * 12))], end=False)
    for i, piece in enumerate(pieces):
        time.sleep(0.25)
        client.send_data(stream_id, piece, end=i == len(pieces) - 1)
        client.pump(0.01)
    stream = client.response(stream_id)
    assert stream.status == 200 and bytes(stream.body) == b"POST /up " + b"".join(pieces)
    client.close()


@pytest.mark.timeout(60)
def test_a_full_worker_closes_an_idle_http2_connection_for_a_new_client(proxy_factory):
    """At capacity a worker makes room by closing a connection that holds nothing (admission):
    an HTTP/2 connection with no stream open is one, as an idle keep-alive connection is. Twenty
    of them filled a worker of twenty, and a new client waited for ever."""
    backend = RawBackend(_app)
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                              mpm={"workers": 1, "threads_per_child": 20, "max_request_workers": 20},
                              timeouts={"keepalive": 30, "client_header": 30}, start=False)
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        idle = [H2Client(proxy.port) for _ in range(20)]
        for client in idle:            # each has sent its preface and SETTINGS, and had ours
            client.wait(lambda client=client: client.remote_settings, 5, "SETTINGS")
        started = time.monotonic()
        newcomer = H2Client(proxy.port)
        assert newcomer.response(newcomer.request("GET", "/fresh"), timeout=5).status == 200
        assert time.monotonic() - started < 3
        line = wait_for(lambda: [x for x in proxy.error_text().splitlines() if "at capacity" in x], 5,
                        what="the worker's line about making room")[0]
        assert "and 1 idle keep-alive ones to make room" in line, line
        newcomer.close()
        for client in idle:
            client.close()
    finally:
        backend.close()


@pytest.mark.timeout(30)
def test_a_transfer_coding_the_client_cannot_take_is_a_502_not_bytes_nothing_labels(env):
    """`Transfer-Encoding: gzip, chunked` from the backend: to an HTTP/2 client the field was
    dropped (HTTP/2 has none) and the gzip bytes went as the content, with nothing saying they
    were gzip (review 2026-12-04-h2-downgrade #2); HTTP/1.0 clients likewise.  Now a 502, as
    nginx answers; an HTTP/1.1 client gets it as it came, and HEAD (no body) goes as before."""
    proxy, _ = env
    client = H2Client(proxy.port)
    assert client.get("/gzipped").status == 502
    assert client.response(client.request("HEAD", "/gzipped")).status == 200
    assert client.get("/after").status == 200, "the connection goes on"
    client.close()
    for version, expected in ((b"1.1", b"HTTP/1.1 200 "), (b"1.0", b"HTTP/1.1 502 ")):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"GET /gzipped HTTP/%s\r\nHost: t\r\nConnection: close\r\n\r\n" % version)
            answer = b""
            while data := sock.recv(65536):
                answer += data
        assert answer.startswith(expected), (version, answer[:200])
        if version == b"1.1":
            assert b"Transfer-Encoding: gzip, chunked\r\n" in answer and gzip.compress(b"hello") in answer
    assert "a transfer coding other than chunked, which this client cannot take (502)" in proxy.error_text()
