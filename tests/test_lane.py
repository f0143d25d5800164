"""The keep-alive lane (worker/_lane.c, worker/lane.py): a plain keep-alive connection's usual
exchanges carried in C, everything else handed back to the Python path where it shows.

Each test drives real keep-alive connections through a real master and workers to a raw
backend, and checks what a client and an operator rely on: every answer right and in order
whatever the next response's shape, the access log's line for each exchange (aborted ones
too), the 502/504 a failing backend gets, the keep-alive timeout, and reloads without an error.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import threading
import time

import h11
import pytest
from proxyproc import Proxy, wait_access, wait_log
from rawbackend import RawBackend, respond
from rawsock import HEAD_END, recv_until_close
from support import serve_tls, wait_for

pytestmark = pytest.mark.timeout(90)


class Client:
    """One keep-alive connection, read with h11."""

    def __init__(self, proxy: Proxy, timeout: float = 10.0):
        self.sock = proxy.connect(timeout)
        self.h11 = h11.Connection(h11.CLIENT)

    def request(self, target: str, method: str = "GET", headers=(), body: bytes = b"", read_slowly: bool = False):
        """(status, headers dict, body) of one exchange."""
        fields = [("Host", "lane.test"), *headers]
        if body:
            fields.append(("Content-Length", str(len(body))))
        self.send(h11.Request(method=method, target=target, headers=fields))
        if body:
            self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())
        return self.response(read_slowly)

    def send(self, event) -> None:
        self.sock.sendall(self.h11.send(event))

    def response(self, read_slowly: bool = False):
        status, fields, body = None, {}, bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if read_slowly:
                    time.sleep(0.002)
                self.h11.receive_data(self.sock.recv(4096 if read_slowly else 65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                fields = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                return status, fields, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed")

    def close(self) -> None:
        self.sock.close()


def _in_lane(proxy: Proxy, sock: socket.socket | None = None) -> socket.socket:
    """A raw connection whose first exchange is over: the lane carries what it sends next."""
    sock = sock if sock is not None else proxy.connect(10)
    sock.settimeout(10)
    sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    return sock


def _shapes(conn) -> None:
    """A backend answering each path with a response of another shape."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        conn.read_body(head)
        path = head.target.split("?")[0]
        client = head.get("x-client") or "-"
        if path == "/chunked":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif path == "/stall":       # a body that stops coming (the route's timeout is 1.5 s)
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"s" * 1000)
            time.sleep(2.5)
            return
        elif path == "/overrun":     # half the body, then the rest and an answer nobody asked for
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 50000)
            time.sleep(0.3)
            conn.send(b"a" * 50000 + respond(200, b"UNASKED"))
        elif path == "/hangup":      # a keep-alive answer, then the backend closes its idle connection
            conn.send(respond(200, b"and goodbye"))
            return
        elif path == "/interim":
            conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + respond(200, b"after 103"))
        elif path == "/hop":
            conn.send(respond(200, b"hop", headers=[("Keep-Alive", "timeout=5"), ("X-Kept", "yes")]))
        elif path == "/empty":
            conn.send(respond(204))
        elif path == "/big":
            conn.send(respond(200, bytes(range(256)) * 4096))      # 1 MiB
        elif path == "/pause":
            time.sleep(0.3)
            conn.send(respond(200, f"paused {head.target}".encode()))
        elif path == "/trickle":     # 10 parts 0.3 s apart: 3 s in all, each part within the 1.5 s timeout
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n")
            for _ in range(10):
                time.sleep(0.3)
                conn.send(b"t" * 1000)
        elif path == "/slow":
            time.sleep(2.5)
            conn.send(respond(200, b"late"))
        elif path == "/split":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n")
            time.sleep(0.05)
            conn.send(b"\r\n01234")
            time.sleep(0.05)
            conn.send(b"56789")
        elif path == "/cut":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            time.sleep(0.1)
            conn.reset()
            return
        elif path == "/cutbig":      # 8 MB to a client that reads slowly, then a reset
            conn.send(respond(200, b"y" * 8_000_000))
            time.sleep(0.3)
            conn.reset()
            return
        elif path == "/drop":        # the connection dies with the request unanswered
            conn.reset()
            return
        else:
            conn.send(respond(200, f"{client} {head.method} {head.target} #{len(conn.requests)}".encode()))


@pytest.fixture(scope="module", params=["plain", "tls"])
def setup(request, tmp_path_factory):
    backend = RawBackend(_shapes)
    directory = tmp_path_factory.mktemp("lane")
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/", "timeout": 1.5}],
                  workers=1, timeouts={"connect": 2, "proxy": 10, "client_header": 5, "keepalive": 3})
    proxy.wrap = lambda sock: sock
    if request.param == "tls":
        serve_tls(proxy, directory)
    proxy.start()
    yield proxy, backend
    proxy.stop()


def test_each_client_keeps_its_backend_connection_between_requests(setup):
    """The lane pins the backend connection its first exchange used: two clients taking turns
    each stay on one backend connection of their own (the pool alone would hand one warm
    connection to both in turn)."""
    proxy, backend = setup
    clients = [Client(proxy), Client(proxy)]
    for i in range(20):
        for n, client in enumerate(clients):
            status, _, body = client.request(f"/pin/{i}", headers=[("X-Client", f"pin{n}")])
            assert (status, body.split(b" ")[:3]) == (200, [f"pin{n}".encode(), b"GET", f"/pin/{i}".encode()])
    conns = {}
    for conn in backend.conns:
        for request in conn.requests:
            if request.target.startswith("/pin/") and request.target != "/pin/0":
                conns.setdefault(request.get("x-client"), set()).add(conn.index)
    assert len(conns["pin0"]) == len(conns["pin1"]) == 1, conns
    assert conns["pin0"] != conns["pin1"]
    for client in clients:
        client.close()


def test_a_client_idle_for_a_second_gives_its_backend_connection_back(setup):
    """Pinned only while the client keeps sending (worker.lane.PARK): a client idle past it
    leaves its backend connection to the pool, where the next client finds it (no new backend
    connection), and its own next request is served all the same."""
    proxy, backend = setup
    first = Client(proxy)
    for i in range(3):
        assert first.request(f"/park/{i}")[0] == 200
    time.sleep(1.6)
    second = Client(proxy)
    for i in range(3):
        assert second.request(f"/park/second/{i}")[0] == 200

    def carried(prefix):
        return {conn.index for conn in backend.conns for request in conn.requests if request.target.startswith(prefix)}
    assert len(carried("/park/")) == 1 and carried("/park/second/") == carried("/park/1")
    assert first.request("/again-after-park")[0] == 200
    first.close()
    second.close()


def test_every_shape_of_response_in_turn_on_one_connection(setup):
    """Whatever the next response is, it arrives whole and the connection goes on: the lane's
    own (Content-Length, 204, HEAD) and those it hands to the Python path (chunked, an interim
    103, a field to take out, a head in pieces), then the lane's again."""
    proxy, _ = setup
    client = Client(proxy)
    for _ in range(2):
        assert client.request("/a")[0] == 200
        assert client.request("/chunked")[2] == b"hello world"
        status, fields, body = client.request("/hop")
        assert (status, body, fields.get("x-kept"), "keep-alive" in fields) == (200, b"hop", "yes", False)
        assert client.request("/empty")[:1] == (204,)
        status, fields, body = client.request("/b", method="HEAD")
        assert (status, body, int(fields["content-length"]) > 0) == (200, b"", True)
        assert client.request("/interim")[2] == b"after 103"
        assert client.request("/split")[2] == b"0123456789"
        assert client.request("/post", method="POST", body=b"x" * 5000)[0] == 200
        status, _, body = client.request("/big", read_slowly=True)
        assert (status, body) == (200, bytes(range(256)) * 4096)
    client.close()


def test_pipelined_requests_are_answered_in_order(setup):
    """Requests sent behind one the lane has under way (it reads them early) are each answered,
    in order, after it; so are those behind a response the Python path took over."""
    proxy, _ = setup
    with proxy.connect() as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"/warm #" + data.rsplit(b"#", 1)[1])
        sock.sendall(b"GET /pause HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        sock.sendall(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /split HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.02)
        sock.sendall(b"GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 4:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.index(b"paused /pause") < data.index(b"GET /p1") < data.index(b"0123456789") < data.index(b"GET /p2")


def test_bytes_a_backend_sent_past_its_body_answer_no_request(setup):
    """A backend that sends more than its Content-Length (here a second response, unasked) is not
    reused: the request the client pipelined meanwhile gets its own answer from a fresh
    connection, not those bytes (review 2026-12-05-lanehostile #1, #2)."""
    proxy, _ = setup
    with _in_lane(proxy) as sock:
        sock.sendall(b"GET /overrun HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(65536)                     # the head has left: the lane relays the body
        sock.sendall(b"GET /after-overrun HTTP/1.1\r\nHost: x\r\n\r\n")
        while not re.search(rb"/after-overrun #\d+$", data) and b"UNASKED" not in data:
            chunk = sock.recv(65536)
            assert chunk, data[-300:]
            data += chunk
        assert b"UNASKED" not in data
        assert data.count(b"HTTP/1.1 200 ") == 2 and b"- GET /after-overrun #1" in data, data[-300:]
    assert len(wait_access(proxy, '"GET /after-overrun ')) == 1


def test_a_backend_that_closes_between_requests_leaves_the_client_its_keep_alive_time(setup):
    """A backend closing its idle connection is the pool's business: the client keeps its own
    keep-alive timeout (3 s here), not the lane's one second (review 2026-12-05-lanehostile #2)."""
    proxy, _ = setup
    with _in_lane(proxy) as sock:
        sock.sendall(b"GET /hangup HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).endswith(b"and goodbye")
        time.sleep(1.6)
        sock.sendall(b"GET /after-hangup HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_client_that_shuts_its_side_during_a_request_gets_the_response(setup):
    """A FIN behind the request (the lane sees it during the exchange): the response still
    comes, then the connection closes."""
    proxy, _ = setup
    with _in_lane(proxy) as sock:
        sock.sendall(b"GET /pause HTTP/1.1\r\nHost: x\r\n\r\n")
        socket.socket.shutdown(sock, socket.SHUT_WR)    # a FIN (TLS: without close_notify, and still read)
        data = recv_until_close(sock, 5)[0]
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"paused /pause")


def test_a_backend_connection_that_dies_idle_or_with_the_request_is_replaced(setup):
    """The pinned connection closed by the backend while idle, or reset with the request on it:
    the request goes again on a fresh connection, as with a pooled one (no 502)."""
    proxy, backend = setup
    client = Client(proxy)
    assert client.request("/d0")[0] == 200
    pinned = backend.conns[-1]
    pinned.sock.shutdown(socket.SHUT_RDWR)       # the backend's keep-alive timeout, say
    time.sleep(0.2)
    assert client.request("/d1")[0] == 200
    assert client.request("/d2")[0] == 200
    status, _, _ = client.request("/drop")
    assert status == 502        # sent again once on a fresh connection, which dropped it too
    assert len(wait_access(proxy, '"GET /drop ')) == 1
    client.close()


def test_a_slow_backend_gets_504_and_a_cut_response_is_logged_as_aborted(setup):
    """The route's timeout runs from the request the lane sent (504 and the connection
    closed); a response whose backend resets in its body reaches the client cut, and its line
    says so (%X), with the bytes that reached the client."""
    proxy, _ = setup
    client = Client(proxy)
    assert client.request("/s0")[0] == 200
    started = time.monotonic()
    status, _, _ = client.request("/slow")
    assert status == 504 and time.monotonic() - started < 3.0
    client.close()
    client = Client(proxy)
    assert client.request("/c0")[0] == 200
    with pytest.raises((ConnectionError, h11.RemoteProtocolError)):
        client.request("/cut")
    lines = wait_access(proxy, '"GET /cut ')
    assert len(lines) == 1 and lines[0].rstrip().endswith("X") and '" 200 ' in lines[0], lines
    client.close()


@pytest.mark.parametrize("path, said", [
    ("/cut", "backend reset the connection: Connection reset by peer (response cut)"),
    ("/stall", "backend timed out (504)"),
])
def test_a_backend_that_fails_a_response_under_way_is_in_the_error_log(setup, path, said):
    """A body the backend cuts or stops sending ends the client connection, and the error log
    says whose failure it was, as it does on the Python path (review 2026-12-05-lanehostile #3)."""
    proxy, _ = setup
    before = proxy.error_text().count(said)
    with _in_lane(proxy) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got, closed = recv_until_close(sock, timeout=5)
    assert closed and got.startswith(b"HTTP/1.1 200 ") and len(got) < 100_000
    assert wait_for(lambda: proxy.error_text().count(said) == before + 1, 3), proxy.error_text()[-600:]
    lines = wait_access(proxy, f'"GET {path} ')
    assert lines and lines[-1].rstrip().endswith("X"), lines


def test_a_body_that_keeps_coming_outlasts_the_route_timeout(setup):
    """The route's timeout is between two reads, not for the whole response: a body trickling
    in for twice as long arrives whole."""
    proxy, _ = setup
    client = Client(proxy)
    assert client.request("/t0")[0] == 200
    assert client.request("/trickle") == (200, {"content-length": "10000"}, b"t" * 10000)
    assert client.request("/t1")[0] == 200
    client.close()


def test_a_cut_response_to_a_slow_client_gets_what_was_read_and_its_line_says_how_much(setup):
    """The backend resets while the client is behind: the client still gets what the proxy's
    socket had received of the body (as worker.exchange relays it: only what the backend's own
    buffer held is lost; all of it when the proxy had read the whole response), and the line's
    %b is what reached it."""
    proxy, _ = setup
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", proxy.port))
    sock = proxy.wrap(sock)
    with _in_lane(proxy, sock):
        sock.sendall(b"GET /cutbig HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)             # the reset comes while the proxy holds what we did not read
        data = b""
        while HEAD_END not in data or len(data) < data.index(HEAD_END) + 4 + 8_000_000:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    body = len(data) - (data.index(HEAD_END) + 4)
    assert body > 4_000_000
    lines = wait_access(proxy, '"GET /cutbig ')
    # All of it, when the backend's own buffer was empty by the reset: then a whole response.
    assert len(lines) == 1 and lines[0].rstrip().endswith("X") == (body < 8_000_000), (body, lines)
    assert f'" 200 {body} ' in lines[0], (body, lines)


def test_connect_after_a_request_is_refused_as_ever(setup):
    """CONNECT is not served by a reverse proxy (405), on a connection's first request or any
    later one: it never reaches the backend."""
    proxy, backend = setup
    with _in_lane(proxy) as sock:
        sock.sendall(b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 405 ")
    assert not [request for request in backend.requests if request.method == "CONNECT"]


def test_every_exchange_has_its_access_log_line(setup):
    proxy, _ = setup
    client = Client(proxy)
    for i in range(50):
        assert client.request(f"/logged/{i}")[0] == 200
    client.close()
    lines = wait_access(proxy, "/logged/", count=50)
    assert len(lines) == 50
    assert all('" 200 ' in line and line.rstrip().endswith("+") for line in lines), lines[:3]


def test_an_idle_connection_closes_at_its_keep_alive_timeout(setup):
    proxy, _ = setup
    client = Client(proxy)
    assert client.request("/i0")[0] == 200
    assert client.request("/i1")[0] == 200
    started = time.monotonic()
    client.sock.settimeout(10)
    assert client.sock.recv(1) == b""
    assert 2.5 < time.monotonic() - started < 4.5
    client.close()


def _warm(proxy: Proxy) -> None:
    """One whole exchange: its backend connection waits in the pool, and the next new client
    connection enters the lane with it before its first request (worker.lane.enter_first)."""
    client = Client(proxy)
    assert client.request("/warm")[0] == 200
    client.close()


def test_a_request_that_asks_for_the_close_gets_it_said_and_done(setup):
    """`Connection: close` as a new connection's first request and after keep-alive ones: the
    response says `Connection: close` once and comes whole, then the connection ends (over TLS
    with a close_notify: a clean end, not a truncation); the backend connection stays for the
    next clients, and each exchange has its access-log line."""
    proxy, backend = setup
    _warm(proxy)
    before = len(backend.conns)
    for n in range(6):
        client = Client(proxy)
        if isinstance(client.sock, ssl.SSLSocket):
            client.sock.suppress_ragged_eofs = False        # a FIN without close_notify raises
        for i in range(n % 3):
            assert client.request(f"/close/{n}/ka{i}")[0] == 200
        client.sock.sendall(f"GET /close/{n}/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data, closed = recv_until_close(client.sock, timeout=5)
        assert closed, data
        head, _, body = data.partition(HEAD_END)
        assert head.startswith(b"HTTP/1.1 200 ") and head.lower().count(b"\r\nconnection: close") == 1, head
        assert body == f"- GET /close/{n}/last #".encode() + body.rsplit(b"#", 1)[1], body
        assert int(re.search(rb"(?i)content-length: *(\d+)", head)[1]) == len(body)
        client.close()
    assert len(backend.conns) == before       # each went back to the pool, and served the next one
    lines = wait_access(proxy, "/last HTTP/1.1", count=6)
    assert len(lines) == 6 and all('" 200 ' in line and line.rstrip().endswith(" -") for line in lines), lines


def test_a_new_connection_owes_its_first_head_by_the_header_timeout(setup):
    """A new connection that the lane holds before its first request (with a backend connection
    waiting) keeps the budget of one that it does not: closed quietly at client_header (5 s
    here) when it sends nothing, not at the lane's second nor at the keep-alive timeout (3 s);
    408 at the same time when its head stops half-way; served when its head comes late."""
    proxy, _ = setup
    _warm(proxy)
    silent, partial, late = Client(proxy), Client(proxy), Client(proxy)
    started = time.monotonic()
    partial.sock.sendall(b"GET /partial HTTP/1.1\r\nHo")
    time.sleep(3.6)
    assert late.request("/late")[0] == 200           # past the lane's second and the keep-alive timeout
    silent.sock.settimeout(5)
    assert silent.sock.recv(1) == b""
    assert 4.5 < time.monotonic() - started < 6.5
    data, closed = recv_until_close(partial.sock, timeout=3)
    assert closed and data.startswith(b"HTTP/1.1 408 "), data
    for client in (silent, partial, late):
        client.close()


def test_a_bad_head_after_good_ones_gets_400(setup):
    proxy, _ = setup
    client = Client(proxy)
    assert client.request("/g0")[0] == 200
    assert client.request("/g1")[0] == 200
    client.sock.sendall(b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n")
    client.sock.settimeout(5)
    data = b""
    while True:
        chunk = client.sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    client.close()


def test_reloads_under_keep_alive_load_cost_no_request(tmp_path):
    """GET-only keep-alive clients (the lane's traffic) through reloads: every request answered
    once, no error; the connections move to the new generation between requests."""
    backend = RawBackend()
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=2)
    proxy.start()
    errors, answered, running = [], [0], [True]

    def run(n):
        try:
            client = Client(proxy)
            i = 0
            while running[0]:
                status, _, body = client.request(f"/r{n}/{i}")
                if status != 200 or not body.endswith(f"/r{n}/{i}".encode()):
                    errors.append((status, body))
                i += 1
                answered[0] += 1
        except Exception as exc:     # noqa: BLE001 (the test reports it)
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for generation in range(2, 6):
            time.sleep(0.4)
            assert proxy.reload().returncode == 0
            proxy.wait_ready(generation)
        time.sleep(0.4)
    finally:
        running[0] = False
        for thread in threads:
            thread.join(10)
        proxy.stop()
    assert not errors, errors[:5]
    assert answered[0] > 100


def test_a_connection_in_the_lane_at_a_reload_keeps_its_keep_alive_timeout(tmp_path):
    """Handed to the new generation between requests, a connection keeps the keep-alive time it
    had (30 s here), not the second for which the lane pins its backend connection: its next
    request, well after that second, is answered."""
    backend = RawBackend(_shapes)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"keepalive": 30})
    proxy.start()
    try:
        client = Client(proxy)
        assert client.request("/r0")[0] == 200
        old = proxy.worker_pids()
        assert client.request("/r1")[0] == 200
        assert proxy.reload().returncode == 0            # within a second of its last request
        proxy.wait_ready(2)
        wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 10, 0.05, "the old worker's exit")
        time.sleep(1.5)
        status, _, body = client.request("/r2")
        assert status == 200 and body.split(b" ")[2] == b"/r2"
        client.close()
    finally:
        proxy.stop()


def test_a_response_under_way_when_the_server_stops_says_connection_close(tmp_path):
    """The whole server stops (no successor to take the connection) while the lane waits for a
    response: it goes out with `Connection: close`, as worker.response says it, so that the
    client does not send its next request into the close."""
    backend = RawBackend(_shapes)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1)
    proxy.start()
    try:
        with _in_lane(proxy) as sock:
            sock.sendall(b"GET /pause HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
            proxy.proc.send_signal(signal.SIGTERM)      # a graceful stop of the whole server
            data = recv_until_close(sock, 10)[0]
        head = data.split(HEAD_END)[0].lower()
        assert head.startswith(b"http/1.1 200 ") and b"\r\nconnection: close" in head, data
        assert data.endswith(b"paused /pause")
        proxy.proc.wait(30)
    finally:
        proxy.stop()


def _injected_proxy(tmp_path, sitecustomize: str, answer, **route) -> Proxy:
    """A started proxy (one worker) whose Python runs `sitecustomize` first, to a RawBackend
    answering with `answer`."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(sitecustomize)
    backend = RawBackend(answer)
    proxy = Proxy(tmp_path / "proxy", [{"path": "/", "to": backend.url + "/", **route}], workers=1,
                  environ={"PYTHONPATH": str(tmp_path / "inject")})
    return proxy.start()


_BOOM = '''
import worker.exchange  # noqa: F401 (worker.response's imports, in their order)
import worker.response as response

_process = response.process


def process(ex, buf, size):
    if b"X-Boom" in bytes(buf[:size]):
        raise RuntimeError("injected fault")
    return _process(ex, buf, size)


response.process = process
'''


def test_a_fault_in_the_python_that_took_a_connection_back_ends_that_connection(tmp_path):
    """A bug in what the Python does with a connection the lane gave back (here worker.response
    raising on a chunked response) ends that connection at once and is logged (worker.faults),
    not held until the route's timeout as a 504 counted against the backend."""
    def boom(conn):
        while True:
            head = conn.read_head()
            if head is None:
                return
            if head.target == "/boom":
                conn.send(b"HTTP/1.1 200 OK\r\nX-Boom: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
            else:
                conn.send(respond(200, b"ok"))

    proxy = _injected_proxy(tmp_path, _BOOM, boom, timeout=4)
    try:
        with _in_lane(proxy) as sock:
            sock.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536) == b""
            assert time.monotonic() - started < 1.0
        assert "internal error in Lane: its connection is closed" in wait_log(proxy, "internal error in Lane")
        lines = wait_access(proxy, '"GET /boom ')
        assert len(lines) == 1 and lines[0].rstrip().endswith("X"), lines
    finally:
        proxy.stop()


_SLOW_ROUTING = '''
import time

import worker.routing as routing

_resolve = routing.Router.resolve


def resolve(self, target, head):
    if target.startswith(b"/slowroute"):
        time.sleep(0.3)
    return _resolve(self, target, head)


routing.Router.resolve = resolve
'''


def test_a_lane_line_counts_the_time_its_request_took_to_route(tmp_path):
    """%D of an exchange the lane carried starts when its head came, as the Python path's does:
    routing that takes 0.3 s (a long list of regex routes) is in it (review 2026-12-05-lanelog #1)."""
    proxy = _injected_proxy(tmp_path, _SLOW_ROUTING, _shapes)
    try:
        with _in_lane(proxy) as sock:
            sock.sendall(b"GET /slowroute HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        lines = wait_access(proxy, '"GET /slowroute ')
        assert len(lines) == 1, lines
        micros = int(re.search(r'" (\d+) "[^"]*" "[^"]*" \S$', lines[0].rstrip())[1])   # %D, before route, backend, %X
        assert micros >= 300_000, lines[0]
    finally:
        proxy.stop()
