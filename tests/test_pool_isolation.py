"""Nothing of one client, or of one request, reaches another through the backend pool.

Found by an adversarial review; each test here but the last failed before its fix:

- bytes a backend sends past a Content-Length body stay on the connection, and would answer
  the next request on it, another client's: over TLS (held in the SSL object, which epoll
  never reports, however much later the next request comes) and over plain TCP (a request
  that takes the connection in the same loop turn);
- a backend that answers before it has read the request body (a "CL.0" backend of HTTP
  desync) reads the rest of that body as a request of its own: its answer would meet the
  next request on the connection;
- two routes to one https address with different TLS settings share no connection (the SNI
  and the checks a handshake passed belong to the connection);
- a connection opened with a PROXY header carries only the client connection it names, not
  another client from the same address (behind one NAT, the port tells users apart).

And HTTP/2 streams on one connection each get their own body, a reset stream leaving the pool
clean.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
import time

import pytest
import trustme
from h2client import H2Client
from rawbackend import RawBackend, RawConn, respond, serve_simple
from support import cert_files

# == bytes past a response body ==================================================================
BODY = b"A" * 40000          # > FIRST_READ (16 KiB): the rest is read or spliced after the head
STRAY_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nNOT-YOUR-RESPONSE"


def _read_head(sock) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        buf += chunk
    return buf


class TlsServer:
    """A threaded TLS server on a free port: `serve(conn, index)` for each accepted connection
    (index: 0 for the first), in its own thread."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        index = 0
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw, index), daemon=True).start()
            index += 1

    def _serve(self, raw, index):
        try:
            self.serve(self.ctx.wrap_socket(raw, server_side=True), index)
        except (OSError, ssl.SSLError):
            return

    def close(self):
        self.listener.close()


class TlsLeftoverBackend(TlsServer):
    """Connection 0: answers request 1 with Content-Length 40000 and 40000 + STRAY_RESPONSE bytes
    (one sendall: the tail and STRAY_RESPONSE share the last TLS record); then answers every later
    request on that connection with 'REAL:<target>'."""

    def serve(self, conn, index):
        first = index == 0
        while head := _read_head(conn):
            target = head.split(b" ")[1]
            if first:
                first = False
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
                time.sleep(0.05)
                conn.sendall(BODY + STRAY_RESPONSE)
            else:
                body = b"REAL:" + target
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def _get(proxy, target: bytes, source: str | None = None) -> bytes:
    """A GET with Connection: close, from `source` (an address of 127.0.0.0/8): all of the answer."""
    with proxy.connect(5, source=source) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


@pytest.mark.timeout(30)
def test_bytes_past_a_tls_backends_body_never_answer_another_client(proxy_factory, tmp_path):
    backend = TlsLeftoverBackend(*cert_files(trustme.CA(), tmp_path, "127.0.0.1"))
    try:
        proxy = proxy_factory([{"path": "/", "to": f"https://127.0.0.1:{backend.port}/",
                                "tls": {"verify": False}}], workers=1)
        first = _get(proxy, b"/alice", "127.0.0.2")
        assert first.endswith(BODY)
        time.sleep(1.0)                        # long after: the pool had every chance to notice
        second = _get(proxy, b"/bob", "127.0.0.3")
        assert b"NOT-YOUR-RESPONSE" not in second, second
        assert second.endswith(b"REAL:/bob"), second
    finally:
        backend.close()


def _stray_after(first: bytes, rest: bytes):
    """Connection 0 answers its request with `first` at once, then (once the event "release"
    is set) `rest` followed by STRAY_RESPONSE in the same send, and sets "sent"; every later
    request gets 'REAL:<target>'."""
    def serve(conn: RawConn) -> None:
        backend = conn.backend
        if conn.index == 0:
            conn.read_head()
            if first:
                conn.send(first)
            backend.event("release").wait(10)
            conn.send(rest + STRAY_RESPONSE)
            backend.event("sent").set()
        while (head := conn.read_head()) is not None:
            answer = b"REAL:" + head.target.encode()
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
    return serve


@pytest.mark.timeout(30)
@pytest.mark.parametrize("size", [40000, 12000], ids=["tail spliced", "tail read"])
def test_bytes_past_a_plain_backends_body_never_answer_a_request_of_the_same_turn(proxy_factory, size):
    body = b"A" * size
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    backend = RawBackend(_stray_after(head + body[:size // 2], body[size // 2:]))
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
        first, second = _alice_then_bob_in_one_turn(proxy, backend)
        assert first.endswith(body)
        assert b"NOT-YOUR-RESPONSE" not in second, second
        assert second.endswith(b"REAL:/bob"), second
    finally:
        backend.close()


def _alice_then_bob_in_one_turn(proxy, backend) -> tuple[bytes, bytes]:
    """Alice's GET is under way; then, with the worker stopped, the backend sends the rest of
    her answer and the stray bytes (`_stray_after`) and Bob sends his GET, so the worker
    finds both in one epoll batch.  Each one's whole answer."""
    [pid] = proxy.worker_pids()
    alice = proxy.connect(5, source="127.0.0.2")
    alice.sendall(b"GET /alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)                        # Alice's request is with the backend
    bob = proxy.connect(5, source="127.0.0.3")
    time.sleep(0.1)
    os.kill(pid, signal.SIGSTOP)
    try:
        backend.event("release").set()
        assert backend.event("sent").wait(5)
        time.sleep(0.1)
        bob.sendall(b"GET /bob HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
    answers = []
    for sock in (alice, bob):
        with sock:
            sock.settimeout(5)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            answers.append(answer)
    return answers[0], answers[1]


def _exactly_first_read(kind: str) -> bytes:
    """A response of exactly FIRST_READ (16 KiB) bytes, head and body: the read that finds
    the head takes all of it, and nothing past it."""
    if kind == "length":
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %05d\r\n\r\n"
        n = 16 * 1024 - len(head % 0)
        return (head % n) + b"A" * n
    head, tail = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"\r\n0\r\n\r\n"
    n = 16 * 1024 - len(head) - len(tail) - len(b"%x\r\n" % 10000)
    return head + b"%x\r\n" % n + b"A" * n + tail


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["length", "chunked"])
def test_a_response_that_fills_the_first_read_exactly_leaves_nothing_for_the_next(proxy_factory, kind):
    """The body ends where the read that found the head ended: what waits behind it is asked
    for (BackendConnection.holds_more), not assumed absent."""
    backend = RawBackend(_stray_after(b"", _exactly_first_read(kind)))
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
        _, second = _alice_then_bob_in_one_turn(proxy, backend)
        assert b"NOT-YOUR-RESPONSE" not in second, second
        assert second.endswith(b"REAL:/bob"), second
    finally:
        backend.close()


# == a body the backend never waited for ==========================================================
SMUGGLED_REQUEST = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def _ignores_bodies(conn: RawConn) -> None:
    """Every head is answered at once, its body never read (a CL.0 backend); the first
    response streams: its head, then the rest of its body 0.5 s later."""
    first = conn.index == 0
    while (head := conn.read_head()) is not None:
        if first:
            first = False
            body = b"B" * 1000
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
            time.sleep(0.5)
            conn.send(body[10:])
        else:
            if head.target == "/smuggled":
                time.sleep(0.3)             # a slow answer: the connection is back in the pool by then
            conn.send(respond(200, b"answer to " + head.target.encode()))


@pytest.mark.timeout(30)
def test_a_body_sent_after_an_early_response_head_never_answers_another_client(proxy_factory):
    backend = RawBackend(_ignores_bodies)
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
        with proxy.connect(5, source="127.0.0.2") as alice:
            alice.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED_REQUEST))
            time.sleep(0.2)                 # the response head is on its way; its body is not done
            alice.sendall(SMUGGLED_REQUEST)         # Alice's body (her own bytes, nobody else's)
            got = b""
            while not got.endswith(b"B" * 990):
                got += alice.recv(65536)
        time.sleep(0.05)
        with proxy.connect(5, source="127.0.0.3") as bob:
            bob.sendall(b"GET /bob HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := bob.recv(65536):
                answer += chunk
        assert b"smuggled" not in answer, answer
        assert answer.endswith(b"answer to /bob"), answer
    finally:
        backend.close()


# == TLS settings are part of a connection's identity ==============================================
class SniEchoBackend(TlsServer):
    """Answers every request on a connection with the SNI that connection's handshake named."""

    _local = threading.local()          # the handshake runs in the connection's own thread

    def __init__(self, cert, key):
        super().__init__(cert, key)
        self.ctx.sni_callback = self._sni

    def _sni(self, sslobj, name, ctx):
        self._local.sni = name

    def serve(self, conn, index):
        sni = getattr(self._local, "sni", None) or "none"
        while _read_head(conn):
            body = b"sni=" + sni.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.timeout(30)
def test_a_route_never_reuses_a_tls_connection_made_for_another_name(proxy_factory, tmp_path):
    backend = SniEchoBackend(*cert_files(trustme.CA(), tmp_path, "a.test", "b.test"))
    try:
        url = f"https://127.0.0.1:{backend.port}/"
        proxy = proxy_factory([
            {"path": "/a", "to": url, "tls": {"verify": False, "server_name": "a.test"}},
            {"path": "/b", "to": url, "tls": {"verify": False, "server_name": "b.test"}},
        ], workers=1)
        assert _get(proxy, b"/a").endswith(b"sni=a.test")
        second = _get(proxy, b"/b")
        assert second.endswith(b"sni=b.test"), second
    finally:
        backend.close()


# == a PROXY header names one client connection =====================================================
def _echo_proxy_line(conn: RawConn) -> None:
    line = conn.line()                     # "PROXY TCP4 src dst sport dport"
    while conn.read_head() is not None:
        conn.send(respond(200, line))


def _get_port(proxy, source: str) -> tuple[int, bytes]:
    with proxy.connect(5, source=source) as sock:
        port = sock.getsockname()[1]
        sock.sendall(b"GET /p/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return port, out.partition(b"\r\n\r\n")[2]


@pytest.mark.timeout(30)
def test_a_proxy_header_connection_carries_only_its_own_client(proxy_factory):
    backend = RawBackend(_echo_proxy_line)
    try:
        proxy = proxy_factory([{"path": "/p/", "to": backend.url + "/", "proxy_protocol": "v1"}], workers=1)
        port_a, seen_a = _get_port(proxy, "127.0.0.2")
        port_b, seen_b = _get_port(proxy, "127.0.0.2")
        assert seen_a.split(b" ")[4] == str(port_a).encode()
        assert seen_b.split(b" ")[4] == str(port_b).encode(), (port_b, seen_b)
    finally:
        backend.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("closing", [True, False], ids=["Connection: close", "client closes"])
def test_closed_clients_leave_no_idle_proxy_header_connections_behind(proxy_factory, closing):
    """A PROXY-header connection can serve only its own client connection: once that client
    has gone it is closed, not left idle in the pool (200 clients, one after the other, would
    leave 200 of them)."""
    backend = RawBackend(_echo_proxy_line)
    try:
        proxy = proxy_factory([{"path": "/p/", "to": backend.url + "/", "proxy_protocol": "v1"}], workers=1)
        [pid] = proxy.worker_pids()
        before = len(os.listdir(f"/proc/{pid}/fd"))
        for i in range(200):
            with proxy.connect(5) as sock:
                sock.sendall(b"GET /p/%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (i, b"Connection: close\r\n" if closing else b""))
                got = b""
                while b"PROXY" not in got:
                    got += sock.recv(65536)
        time.sleep(0.5)
        after = len(os.listdir(f"/proc/{pid}/fd"))
        assert after - before <= 8, f"the worker holds {after - before} more descriptors after 200 clients"
    finally:
        backend.close()


# == HTTP/2 streams ===============================================================================
def _echo_target_and_body(conn):
    serve_simple(conn, lambda head, body: respond(200, head.target.encode() + b"|" + body))


@pytest.mark.timeout(60)
def test_interleaved_streams_keep_their_own_bodies(proxy_factory):
    backend = RawBackend(_echo_target_and_body)
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, start=False)
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        client = H2Client(proxy.port)
        ids = {}
        for i in range(8):
            headers = [("content-length", str(3 * 20000))] if i % 2 else []
            sid = client.request("POST", f"/s{i}", headers=headers, end=False)
            ids[sid] = i
        reset_id = list(ids)[3]
        for part in range(3):
            for sid, i in ids.items():
                if sid == reset_id and part == 1:
                    client.conn.reset_stream(sid)
                    client.flush()
                    continue
                if sid == reset_id and part > 1:
                    continue
                client.send_data(sid, bytes([65 + i]) * 20000, end=(part == 2))
        for sid, i in ids.items():
            if sid == reset_id:
                continue
            stream = client.response(sid, timeout=20)
            assert stream.status == 200, (i, stream.headers)
            assert bytes(stream.body) == f"/s{i}|".encode() + bytes([65 + i]) * 60000, (i, bytes(stream.body)[:80])
        # After the reset stream: every pooled connection still answers its own request.
        for k in range(10):
            stream = client.get(f"/after{k}")
            assert bytes(stream.body) == f"/after{k}|".encode(), bytes(stream.body)[:200]
        client.close()
    finally:
        backend.close()
