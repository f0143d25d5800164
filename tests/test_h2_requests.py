"""HTTP/2 to clients, HTTP/1.1 to backends (issue #17): curl's --http2 (nghttp2) and python-hyper's
h2 as clients, over TLS (ALPN h2) and h2c with prior knowledge, against one proxy; a raw backend
shows exactly what reached it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest
import trustme
from backends import BenchBackend
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import free_port, wait_for

PATTERN = bytes(range(256)) * 4096      # 1 MiB


def _payload(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def _app(conn) -> None:
    """The backend: one request after another on each connection; the path says what to do."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        body = conn.read_body(head)
        path = head.target
        if path.startswith("/slow"):
            time.sleep(1.5)
            conn.send(respond(200, b"slow"))
        elif path.startswith("/fast"):
            conn.send(respond(200, b"fast"))
        elif path == "/echo":
            digest = hashlib.sha256(body).hexdigest()
            conn.send(respond(200, body, [("X-Body", f"{len(body)} {digest}")]))
        elif path.startswith("/big/"):
            conn.send(respond(200, _payload(int(path[5:]))))
        elif path == "/trailers":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\n\r\n")
        elif path == "/fields":
            conn.send(respond(200, b"ok", [("Connection", "keep-alive, X-Hop"), ("Keep-Alive", "timeout=5"),
                                           ("X-Hop", "dropped"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                           ("X-Mixed-Case", "Kept")]))
        elif path == "/hints":
            conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            conn.send(respond(200, b"after hints"))
        elif path.startswith("/status/"):
            conn.send(respond(int(path[8:]), b""))
        elif path == "/cut":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            conn.reset()
            return
        elif path.startswith("/hang"):
            time.sleep(3)
            return
        else:
            conn.send(respond(200, f"{head.method} {path}".encode(), [("Content-Type", "text/plain")]))


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def env(tmp_path_factory, ca):
    """One proxy, two listeners: TLS (h2 by ALPN, the default) and plain with `http2: h2c`."""
    directory = tmp_path_factory.mktemp("h2")
    backend = RawBackend(_app, backlog=256)   # 100 streams at once are 100 backend connections
    bench = BenchBackend(str(directory))      # one epoll process: the load test's 1,000 backend connections
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path, ca_path = (str(directory / name) for name in ("cert.pem", "key.pem", "ca.pem"))
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    ca.cert_pem.write_to_path(ca_path)
    tls_port = free_port()
    routes = [{"path": "/timeout/", "to": backend.url + "/hang/", "timeout": 1},
              {"path": "/down/", "to": f"http://127.0.0.1:{free_port()}/"},
              {"path": "/bench/", "to": f"http://127.0.0.1:{bench.port}/"},
              {"path": "/", "to": backend.url + "/"}]
    proxy = Proxy(directory, routes, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"},
                              {"address": f"127.0.0.1:{tls_port}", "tls": {"cert": cert_path, "key": key_path}}]
    proxy.start()
    proxy.tls_port, proxy.ca_path = tls_port, ca_path
    yield proxy, backend
    proxy.stop()
    backend.close()
    bench.close()


def _tls(ca):
    import ssl
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _curl(*args, timeout: float = 30) -> subprocess.CompletedProcess:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=timeout)


@pytest.mark.timeout(60)
def test_curl_speaks_h2_over_tls_and_h2c_and_http11_still_works(env, tmp_path):
    proxy, backend = env
    tls_url = f"https://localhost:{proxy.tls_port}"
    resolve = f"localhost:{proxy.tls_port}:127.0.0.1"
    done = _curl("--http2", "--cacert", proxy.ca_path, "--resolve", resolve, "-w", "\n%{http_version}",
                 f"{tls_url}/hello?x=1")
    assert done.stdout.decode().splitlines() == ["GET /hello?x=1", "2"], done
    # A 3 MiB POST, streamed by curl in DATA frames: the backend gets every byte.
    upload = tmp_path / "upload.bin"
    upload.write_bytes(_payload(3 << 20))
    done = _curl("--http2", "--cacert", proxy.ca_path, "--resolve", resolve, "--data-binary", f"@{upload}",
                 "-D", "-", "-o", "/dev/null", f"{tls_url}/echo")
    assert f"x-body: {3 << 20} {hashlib.sha256(_payload(3 << 20)).hexdigest()}" in done.stdout.decode(), done
    head = backend.requests[-1]
    assert head.line == b"POST /echo HTTP/1.1" and head.get("x-forwarded-proto") == "https"
    # h2c with prior knowledge on the plain listener, HTTP/1.1 on both.
    done = _curl("--http2-prior-knowledge", "-w", "\n%{http_version}", proxy.url("/plain"))
    assert done.stdout.decode().splitlines() == ["GET /plain", "2"], done
    assert backend.requests[-1].get("x-forwarded-proto") == "http"
    for url in (proxy.url("/one"), f"{tls_url}/one"):
        done = _curl("--http1.1", "--cacert", proxy.ca_path, "--resolve", resolve, "-w", "\n%{http_version}", url)
        assert done.stdout.decode().splitlines() == ["GET /one", "1.1"], done
    lines = wait_for(lambda: [line for line in proxy.access_lines() if '"POST /echo HTTP/2.0" 200' in line], 5)
    assert lines, proxy.access_lines()


@pytest.mark.timeout(60)
def test_fields_are_converted_both_ways(env, ca):
    proxy, backend = env
    client = H2Client(proxy.tls_port, tls=_tls(ca))
    assert client.wait(lambda: client.remote_settings, 5, "the server's SETTINGS")[8] == 1   # ENABLE_CONNECT_PROTOCOL
    stream = client.get("/fields", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers"),
                                            ("x-forwarded-for", "10.1.1.1"), ("user-agent", "h2-test")],
                        authority="app.example:8443")
    assert stream.status == 200 and bytes(stream.body) == b"ok"
    names = [name for name, _ in stream.headers]
    assert not {"connection", "keep-alive", "x-hop", "transfer-encoding"} & set(names), stream.headers
    assert [v for k, v in stream.headers if k == "set-cookie"] == ["a=1", "b=2"]
    assert stream.header("x-mixed-case") == "Kept"
    head = backend.requests[-1]
    assert head.line == b"GET /fields HTTP/1.1"
    assert head.get("cookie") == "a=1; b=2"                       # crumbs joined (RFC 9113 §8.2.3)
    assert head.get("x-forwarded-host") == "app.example:8443"
    assert head.get("x-forwarded-for") == "10.1.1.1, 127.0.0.1"
    assert head.get("te") is None and head.get("user-agent") == "h2-test"
    # 1xx, HEAD, 204, 304.
    hinted = client.get("/hints")
    assert hinted.interim and hinted.interim[0][0] == (":status", "103") and bytes(hinted.body) == b"after hints"
    assert client.get("/big/1000", ).header("content-length") == "1000"
    head_only = client.response(client.request("HEAD", "/big/5000"))
    assert head_only.status == 200 and head_only.header("content-length") == "5000" and not head_only.body
    for status in (204, 304):
        answer = client.get(f"/status/{status}")
        assert answer.status == status and answer.ended and not answer.body
    client.close()


@pytest.mark.timeout(60)
def test_malformed_requests_are_stream_errors_and_the_connection_goes_on(env):
    proxy, backend = env
    client = H2Client(proxy.port)
    before = len(backend.requests)
    bad = [[("connection", "keep-alive")], [("upgrade", "websocket")], [("transfer-encoding", "chunked")],
           [("te", "gzip")], [("X-Upper", "1")], [("x-crlf", "a\r\nx-evil: 1")], [("bad name", "1")]]
    for headers in bad:
        stream = client.response(client.request("GET", "/malformed", headers=headers))
        assert stream.reset == 1, (headers, stream.headers)               # PROTOCOL_ERROR
    # pseudo-header fields: missing :path, unknown, after a regular field
    stream_id = client.conn.get_next_available_stream_id()
    client.streams[stream_id] = type(client.streams[1])(stream_id)
    client.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"), (":authority", "x"),
                                         ("accept", "*/*"), (":path", "/late")], end_stream=True)
    client.flush()
    assert client.response(stream_id).reset == 1
    # What RFC 9113 §8.3 calls malformed and the proxy resolved by picking one (review
    # 2026-12-04-h2-downgrade #5): :scheme twice, host twice, host other than :authority.
    for fields in ([(":scheme", "http")], [("host", "proxy.test"), ("host", "b.test")], [("host", "other.test")]):
        stream_id = client.conn.get_next_available_stream_id()
        client.streams[stream_id] = type(client.streams[1])(stream_id)
        client.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"), (":authority", "proxy.test"),
                                             (":path", "/twice"), *fields], end_stream=True)
        client.flush()
        assert client.response(stream_id).reset == 1, fields
    assert client.get("/same", headers=[("host", "PROXY.test")]).status == 200    # the same host, any case
    assert client.get("/same", headers=[("host", "proxy.test:443")]).status == 200  # its default port written
    assert len(backend.requests) == before + 2                             # nothing else reached the backend
    assert client.get("/after").status == 200                               # the connection is fine
    # A body longer than its content-length.
    stream_id = client.request("POST", "/echo", headers=[("content-length", "3")], body=b"12345")
    assert client.response(stream_id).reset == 1
    client.close()


@pytest.mark.timeout(60)
def test_bodies_stream_both_ways_with_trailers(env):
    proxy, backend = env
    client = H2Client(proxy.port)
    # A body sent in pieces without content-length: chunked to the backend, trailers included.
    payload = _payload(300_000)
    stream_id = client.request("POST", "/echo", end=False)
    for start in range(0, len(payload), 70_000):
        client.send_data(stream_id, payload[start:start + 70_000])
    client.conn.send_headers(stream_id, [("x-trailer", "done")], end_stream=True)
    client.flush()
    stream = client.response(stream_id)
    assert stream.status == 200 and bytes(stream.body) == payload
    head = backend.requests[-1]
    assert head.get("transfer-encoding") == "chunked" and head.get("content-length") is None
    raw = bytes(backend.conns[-1].raw) if backend.conns else b""
    assert b"x-trailer: done\r\n" in raw
    # A trailer value with surrounding whitespace is malformed, as in the head (RFC 9113 §8.2.1).
    stream_id = client.request("POST", "/echo", end=False)
    client.send_data(stream_id, b"some")
    client.conn.send_headers(stream_id, [("x-trailer", " padded ")], end_stream=True)
    client.flush()
    assert client.response(stream_id).reset == 1
    assert b"x-trailer:  padded" not in bytes(backend.conns[-1].raw)
    # With content-length, and whole in the first read: Content-Length to the backend.
    stream = client.response(client.request("POST", "/echo", body=b"small body"))
    assert bytes(stream.body) == b"small body" and backend.requests[-1].get("content-length") == "10"
    # The backend's chunked response with trailers: DATA, then trailers that end the stream.
    stream = client.get("/trailers")
    assert bytes(stream.body) == b"hello world" and stream.trailers == [("x-checksum", "abc123")]
    big = client.get(f"/big/{5 << 20}")
    assert bytes(big.body) == _payload(5 << 20)
    client.close()


@pytest.mark.timeout(60)
def test_100_streams_to_a_slow_and_a_fast_backend_on_one_connection(env):
    proxy, _ = env
    client = H2Client(proxy.port)
    client.wait(lambda: client.remote_settings, 5, "the server's SETTINGS")
    slow = [client.request("GET", f"/slow/{i}") for i in range(50)]
    fast = [client.request("GET", f"/fast/{i}") for i in range(50)]
    client.wait(lambda: all(client.streams[s].finished for s in slow + fast), 20, "100 streams")
    assert all(client.streams[s].status == 200 for s in slow + fast)
    assert max(client.streams[s].done_at for s in fast) < min(client.streams[s].done_at for s in slow)
    client.close()


@pytest.mark.timeout(60)
def test_a_slow_reader_gets_its_window_and_stalls_no_other_stream(env):
    """A client that reads one stream slowly: the proxy sends that stream no more than its
    window and holds one backend read; another stream on the connection is served meanwhile."""
    proxy, _ = env
    client = H2Client(proxy.port, auto_ack=False, settings={4: 16384})     # INITIAL_WINDOW_SIZE
    client.conn.increment_flow_control_window(16 << 20)                    # a roomy connection window
    client.flush()
    size = 4 << 20
    slow = client.request("GET", f"/big/{size}")
    client.wait(lambda: len(client.streams[slow].body) >= 16384, 10, "the first window")
    time.sleep(0.5)
    client.pump(0.2)
    assert len(client.streams[slow].body) == 16384                        # exactly the window, no more
    other = client.request("GET", "/big/200000")
    client.wait(lambda: client.streams[other].finished or len(client.streams[other].body) >= 16384, 10)
    client.ack(other)
    client.ack(slow)
    # Reading both on: each gets all of its bytes, in order.
    client.auto_ack = True
    client.ack(slow)
    client.ack(other)
    client.wait(lambda: client.streams[slow].finished and client.streams[other].finished, 30, "both streams")
    assert bytes(client.streams[slow].body) == _payload(size)
    assert bytes(client.streams[other].body) == _payload(200000)
    client.close()


@pytest.mark.timeout(60)
def test_backend_errors_become_responses_or_resets(env):
    proxy, _ = env
    client = H2Client(proxy.port)
    assert client.get("/down/x").status == 502                   # connect refused: an answer of ours
    started = time.monotonic()
    assert client.get("/timeout/x").status == 504                # the route's 1 s timeout
    assert time.monotonic() - started < 3
    cut = client.get("/cut")                                     # cut mid-body: only this stream ends
    assert cut.status == 200 and cut.reset == 2 and len(cut.body) <= 1000      # INTERNAL_ERROR
    assert client.get("/after-errors").status == 200
    client.close()
    lines = wait_for(lambda: [line for line in proxy.access_lines() if '"GET /cut HTTP/2.0"' in line], 5)
    assert lines[0].endswith(" X")                               # logged as aborted


@pytest.mark.timeout(90)
def test_h2load_10000_requests_over_10_connections_of_100_streams(env):
    proxy, _ = env
    h2load = shutil.which("h2load")
    if h2load is None:
        if os.environ.get("CI"):
            pytest.fail("h2load (Debian: nghttp2-client) is not installed, and CI is set")
        pytest.skip("h2load is not installed (Debian: apt-get install nghttp2-client)")
    done = subprocess.run([h2load, "-n", "10000", "-c", "10", "-m", "100", proxy.url("/bench/small")],
                          capture_output=True, text=True, timeout=80)
    assert "10000 succeeded, 0 failed, 0 errored" in done.stdout, done.stdout + done.stderr
    wait_for(lambda: proxy.status()["totals"]["requests"] >= 10000, 5, what="the scoreboard (every 0.5 s)")


@pytest.mark.timeout(30)
def test_a_stream_refused_for_a_field_too_large_is_logged_with_its_request(env):
    """431 for a field over LimitRequestFieldSize: its line was "-" (review 2026-12-04-logs #9)."""
    proxy, _ = env
    client = H2Client(proxy.port)
    stream = client.response(client.request("GET", "/field/too/large", headers=[("x-big", "b" * 9000)]))
    assert stream.status == 431
    client.close()
    # Found by its target: " 431 " matched another request's line once, whose %D was 431 µs.
    line = wait_for(lambda: [x for x in proxy.access_lines() if "/field/too/large" in x], 5)[0]
    assert '"GET /field/too/large HTTP/2.0" 431 ' in line, line
