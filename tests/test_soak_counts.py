"""What a long run with mixed traffic found drifting or lost (docs/reviews/2026-12-03-soak):
each test is one of those faults, made to happen a few times on purpose.

- Reloads while old generations linger on long requests: the client table has a few counter
  cells per worker (8 for 2 workers), the old generations held them all, and the new
  generation's workers, finding none, enforced no per-client limit at all.
- A TLS keep-alive connection whose response began before a reload and ended after it was
  closed at once (a TLS session cannot move), though its head had said keep-alive: the
  client's next request met the close.  An idle TLS connection stays until its next response
  (`Connection: close`); this one now does too.
- An HTTP/2 stream the client resets in the read that brought its HEADERS never reaches a
  backend (the rapid-reset defence), and it was not logged either: the access log lost a
  line per such request, which nginx logs as a 499."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
import trustme
from h2client import H2Client
from proxyproc import wait_access
from rawbackend import RawBackend, serve_simple
from rawsock import read_head, recv_exact
from support import cert_files, free_port

RESETS = 10
LIMIT = 4


@pytest.mark.timeout(60)
def test_reloads_while_old_generations_linger_keep_per_client_limits(proxy_factory):
    release = threading.Event()

    def hold_or_answer(conn):
        head = conn.read_head()
        if head is not None and head.target.startswith("/held"):
            release.wait(30)            # the old generation lingers until this request ends
            return
        if head is not None:
            conn.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            serve_simple(conn)

    backend = RawBackend(hold_or_answer, timeout=40)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2,
                          mpm={"workers": 2, "server_limit": 16, "graceful_timeout": 10},
                          limits={"per_client": {"connections": LIMIT}})
    held = []
    try:
        for generation in range(2, 6):        # 4 generations x 2 workers hold the 8 cells
            for _ in range(8):                # other clients' requests, spread over both workers
                sock = proxy.connect(source=f"127.0.1.{len(held) + 1}")
                sock.sendall(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
                held.append(sock)
            assert proxy.reload().returncode == 0
            proxy.wait_ready(generation)
        served, kept = 0, []
        for _ in range(3 * LIMIT):            # one client, many connections at once
            try:
                sock = proxy.connect(source="127.0.0.9", timeout=3)
                kept.append(sock)
                sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
                served += sock.recv(100).startswith(b"HTTP/1.1 200")
            except OSError:
                pass                          # refused at accept: reset
        assert served == LIMIT, f"{served} connections of one client served, limit {LIMIT}"
        assert "no free counter cell" not in proxy.error_text()
    finally:
        release.set()
        for sock in held + locals().get("kept", []):
            sock.close()
        backend.close()


@pytest.mark.timeout(40)
def test_a_tls_response_that_spans_a_reload_leaves_its_connection_open_for_one_more(proxy_factory, tmp_path):
    halfway = threading.Event()

    def split_response(conn):
        while (head := conn.read_head()) is not None:
            if head.target == "/split":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
                halfway.wait(20)                  # the rest comes once the reload is done
                conn.send(b"-half")
            else:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")

    ca = trustme.CA()
    cert, key = cert_files(ca, str(tmp_path), "localhost")
    backend = RawBackend(split_response)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1)
    tls_port = free_port()
    proxy.config["listen"].append({"address": f"127.0.0.1:{tls_port}", "tls": {"cert": cert, "key": key}})
    proxy.start()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"GET /split HTTP/1.1\r\nHost: t\r\n\r\n")
            head, buf = read_head(sock, bytearray())
            assert b"close" not in head.lower()               # keep-alive, said before the reload
            assert recv_exact(sock, 5, buf) == b"first"
            assert proxy.reload().returncode == 0
            proxy.wait_ready(2)
            halfway.set()
            assert recv_exact(sock, 5, buf) == b"-half"
            sock.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                head, buf = read_head(sock, buf)
            except (ConnectionError, OSError) as exc:
                pytest.fail(f"the request after the reload met a closed connection: {exc!r}")
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower(), head
            assert recv_exact(sock, 4, buf) == b"next"
    finally:
        halfway.set()
        backend.close()


@pytest.fixture
def h2c_proxy(proxy_factory):
    backend = RawBackend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    yield proxy, backend
    backend.close()


@pytest.mark.timeout(30)
def test_a_stream_reset_with_its_headers_is_logged_as_499(h2c_proxy):
    proxy, backend = h2c_proxy
    for i in range(RESETS):
        client = H2Client(proxy.port)
        stream_id = client.conn.get_next_available_stream_id()     # HEADERS and RST_STREAM in one write
        client.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":authority", "proxy.test"),
                                             (":path", f"/gone{i}")], end_stream=True)
        client.conn.reset_stream(stream_id)
        client.flush()
        assert client.get("/after", scheme="http").status == 200
        client.close()
    after = wait_access(proxy, "/after", RESETS)
    assert len(after) == RESETS
    gone = wait_access(proxy, "/gone", RESETS, timeout=1.0)
    assert len(gone) == RESETS, f"{len(gone)} of {RESETS} reset streams logged"
    assert all('HTTP/2.0" 499 ' in line for line in gone), gone
    assert not [r for r in backend.requests if r.target.startswith("/gone")]    # and still never forwarded
