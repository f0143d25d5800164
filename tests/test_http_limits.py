"""Parsing limits and client timeouts (issue #3).

`limits:` mirrors Apache: LimitRequestLine 8190 (414 beyond), LimitRequestFieldSize 8190
and LimitRequestFields 100 (431 beyond), LimitRequestBody 0 = unlimited (413 beyond a
set limit).  Lengths are Apache's: a request line or a field line without its CRLF.
Anything refused here must not reach the backend at all.

Two masters for the module: `defaults` (no `limits:` section; client_header and
keepalive 1 s for the timeout tests) and `small` (tiny limits).
"""

from __future__ import annotations

import threading
import time

import pytest
from backends import HttpBackend
from httpclient import Client, Reader
from proxyproc import running_proxy
from rawsock import is_closed, recv_until_close, status_of
from support import wait_for


def _echo(req, body):
    return 200, [("Content-Type", "text/plain")], b"len=%d" % len(body)


@pytest.fixture(scope="module")
def backend():
    b = HttpBackend(_echo)
    yield b
    b.close()


@pytest.fixture(scope="module")
def defaults(tmp_path_factory, backend):
    with running_proxy(tmp_path_factory.mktemp("limits-default"), [{"path": "/", "to": backend.url + "/"}],
                       workers=1, timeouts={"client_header": 1, "keepalive": 1, "proxy": 5, "connect": 2}) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def small(tmp_path_factory, backend):
    limits = {"request_line": 100, "header_field": 60, "header_fields": 5, "request_body": 1000}
    with running_proxy(tmp_path_factory.mktemp("limits-small"), [{"path": "/", "to": backend.url + "/"}],
                       workers=1, limits=limits) as proxy:
        yield proxy


def _snapshot(backend: HttpBackend) -> tuple:
    return backend.connections, sum(len(r) for r in backend.raw), len(backend.requests)


def _send(proxy, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    with proxy.connect() as sock:
        sock.sendall(data)
        return recv_until_close(sock, timeout)


def _one(proxy, data: bytes) -> int:
    """Status of one request sent with Connection: close."""
    answer, _ = _send(proxy, data)
    return status_of(answer)


def _request_line_of(length: int) -> bytes:
    line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == length
    return line


def _field_of(length: int) -> bytes:
    field = b"X-Long: " + b"v" * (length - len(b"X-Long: "))
    assert len(field) == length
    return field


def _refused(proxy, backend, data: bytes, status: int) -> None:
    before = _snapshot(backend)
    answer, closed = _send(proxy, data)
    time.sleep(0.05)
    assert status_of(answer) == status, answer[:200]
    assert b"connection: close" in answer.split(b"\r\n\r\n")[0].lower()
    assert closed
    assert _snapshot(backend) == before, "a refused request reached the backend"


# == Apache's defaults ============================================================================
def test_default_request_line_limit_is_8190(defaults, backend):
    assert _one(defaults, _request_line_of(8190) + b"\r\nHost: t\r\nConnection: close\r\n\r\n") == 200
    _refused(defaults, backend, _request_line_of(8191) + b"\r\nHost: t\r\n\r\n", 414)


def test_default_header_field_limit_is_8190(defaults, backend):
    assert _one(defaults, b"GET / HTTP/1.1\r\nHost: t\r\n" + _field_of(8190) + b"\r\nConnection: close\r\n\r\n") == 200
    _refused(defaults, backend, b"GET / HTTP/1.1\r\nHost: t\r\n" + _field_of(8191) + b"\r\n\r\n", 431)


def test_default_header_fields_limit_is_100(defaults, backend):
    def head(count: int) -> bytes:   # Host + Connection + the rest: `count` fields in all
        fields = b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(count - 2))
        return b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + fields + b"\r\n"
    assert _one(defaults, head(100)) == 200
    _refused(defaults, backend, head(101), 431)


def test_default_request_body_is_unlimited(defaults):
    body = b"z" * (3 * 1024 * 1024)
    with Client(defaults) as client:
        response = client.request("POST", "/upload", body=body)
    assert response.status == 200 and response.body == b"len=%d" % len(body)


# == configured limits ============================================================================
def test_configured_request_line_limit(small, backend):
    assert _one(small, _request_line_of(100) + b"\r\nHost: t\r\nConnection: close\r\n\r\n") == 200
    _refused(small, backend, _request_line_of(101) + b"\r\nHost: t\r\n\r\n", 414)


def test_configured_header_field_limit(small, backend):
    assert _one(small, b"GET / HTTP/1.1\r\nHost: t\r\n" + _field_of(60) + b"\r\nConnection: close\r\n\r\n") == 200
    _refused(small, backend, b"GET / HTTP/1.1\r\nHost: t\r\n" + _field_of(61) + b"\r\n\r\n", 431)


def test_configured_header_fields_limit(small, backend):
    five = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
    assert _one(small, five + b"\r\n") == 200
    _refused(small, backend, five + b"D: 4\r\n\r\n", 431)


def test_configured_body_limit_with_content_length(small, backend):
    ok = b"POST /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n" + b"q" * 1000
    answer, _ = _send(small, ok)
    assert status_of(answer) == 200 and answer.endswith(b"len=1000")
    _refused(small, backend, b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n" + b"q" * 1001, 413)


def test_configured_body_limit_counts_chunked_data_not_framing(small, backend):
    """1000 data bytes in 100 chunks (1,500+ bytes on the wire) are within a 1000-byte limit,
    as in Apache, which counts the de-chunked body.  The body is sent after the head has
    gone out, so it is relayed (and counted) as it streams.  Guards against the chunked
    framing bytes being counted against the limit (a 413 here)."""
    body = b"".join(b"a\r\n" + b"%010d" % i + b"\r\n" for i in range(100)) + b"0\r\n\r\n"
    with small.connect() as sock:
        sock.sendall(b"POST /counted HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        wait_for(lambda: any(b"POST /counted " in raw for raw in backend.raw[-3:]), 3,
                 what="the head at the backend")
        sock.sendall(body)
        answer, _ = recv_until_close(sock, 4)
    assert status_of(answer) == 200, answer[:200]
    assert answer.endswith(b"len=1000")


def test_configured_body_limit_chunked_over_the_limit_in_one_write(small, backend):
    """Head and a 2000-byte chunked body in one write, limit 1000: 413, and the backend never
    gets the request.  Guards against body bytes read together with the head being forwarded
    without any limit check."""
    before = len(backend.requests)
    answer, closed = _send(small, b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n")
    time.sleep(0.05)
    assert status_of(answer) == 413, answer[:200]
    assert closed
    assert len(backend.requests) == before, "a body over LimitRequestBody was delivered whole"


def test_configured_body_limit_chunked_over_the_limit_while_streaming(small, backend):
    """The head is already on its way to the backend when the body crosses the limit: the
    client still gets 413 (nothing of the response has started) and the backend never
    gets a complete request.  Guards against the bytes that came with the head being left
    out of the count."""
    before = len(backend.requests)
    with small.connect() as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"x" * 500 + b"\r\n")
        wait_for(lambda: any(b"POST /c " in raw and b"x" * 500 in raw for raw in backend.raw[-3:]), 3,
                 what="the first chunk at the backend")
        sock.sendall(b"1f4\r\n" + b"y" * 500 + b"\r\n" + b"a\r\n" + b"z" * 10 + b"\r\n0\r\n\r\n")
        answer, closed = recv_until_close(sock, 3)
    time.sleep(0.05)
    assert status_of(answer) == 413, answer[:200]
    assert closed
    assert len(backend.requests) == before


@pytest.mark.timeout(15)
def test_413_reaches_a_client_that_is_still_sending_its_body(small, backend):
    """A client that sends its whole over-limit body without waiting (no Expect) must still
    read the 413: the proxy drains (lingering close) instead of closing with unread bytes,
    which would reset the connection and destroy the answer before the client reads it."""
    before = _snapshot(backend)
    with small.connect() as sock:
        size = 4 * 1024 * 1024
        errors = []

        def push() -> None:
            try:
                sock.sendall(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
                for _ in range(size // 65536):
                    sock.sendall(b"u" * 65536)
            except OSError as exc:
                errors.append(exc)
        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        time.sleep(0.3)
        answer, closed = recv_until_close(sock, 4)
        pusher.join(5)
    assert status_of(answer) == 413, f"the client did not get the 413 (got {answer[:100]!r}, send: {errors})"
    assert closed
    assert _snapshot(backend) == before


@pytest.mark.timeout(20)
def test_a_spliced_chunk_refused_with_413_reaches_nobody_else(tmp_path_factory):
    """A chunk of 100,000 bytes whose size line came first is spliced (it is opaque to the
    framing) into the worker's one pipe; past LimitRequestBody the request gets its 413, and
    those bytes must not lead the next body spliced out of that pipe: another client's
    response (they did, before the pipe was dropped with them)."""
    page = b"B" * 200_000
    big = HttpBackend(lambda req, body: (200, [("Content-Type", "text/plain")], page))
    try:
        with running_proxy(tmp_path_factory.mktemp("limits-pipe"), [{"path": "/", "to": big.url + "/"}],
                           workers=1, limits={"request_body": 1000}) as proxy:
            with proxy.connect() as sock:
                sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
                time.sleep(0.3)                         # the exchange relays the body now
                sock.sendall(b"%x\r\n" % 100_000)
                time.sleep(0.3)                         # the size line is read: the data is opaque
                sock.sendall(b"SECRET-OF-CLIENT-A " * 5000)
                answer, _ = recv_until_close(sock, 5)
            assert status_of(answer) == 413, answer[:200]
            with proxy.connect() as sock:
                sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                answer, closed = recv_until_close(sock, 5)
            assert closed and status_of(answer) == 200, answer[:200]
            body = answer.split(b"\r\n\r\n", 1)[1]
            assert b"SECRET" not in body, "another client's request body reached this response"
            assert body == page
    finally:
        big.close()


# == timeouts =====================================================================================
@pytest.mark.timeout(10)
def test_stalled_request_head_gets_408_after_client_header(defaults, backend):
    before = _snapshot(backend)
    with defaults.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /stalled HTTP/1.1\r\nHost: t\r\n")
        answer, closed = recv_until_close(sock, 5)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 408, answer[:200]
    assert closed
    assert 0.8 <= elapsed < 2.5, f"408 after {elapsed:.2f}s with client_header = 1"
    assert _snapshot(backend) == before


@pytest.mark.timeout(10)
def test_trickled_request_head_does_not_extend_client_header(defaults):
    """client_header bounds the whole head, not the gap between bytes (slowloris)."""
    head = b"GET /trickle HTTP/1.1\r\nHost: t\r\nX-Slow: 1234567890\r\n"
    with defaults.connect() as sock:
        started = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        for byte in head:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                pass
            except OSError:
                break
            if answer or time.monotonic() - started > 4:
                break
        rest, _ = recv_until_close(sock, 3)
        elapsed = time.monotonic() - started
    answer += rest
    assert status_of(answer) == 408, answer[:200]
    assert elapsed < 2.5, f"a trickled head held the connection for {elapsed:.2f}s"


@pytest.mark.timeout(10)
def test_silent_connection_is_closed_after_client_header(defaults):
    with defaults.connect() as sock:
        started = time.monotonic()
        _, closed = recv_until_close(sock, 5)
        elapsed = time.monotonic() - started
    assert closed
    assert 0.8 <= elapsed < 2.5, f"closed after {elapsed:.2f}s with client_header = 1"


@pytest.mark.timeout(10)
def test_idle_keep_alive_connection_is_closed_after_keepalive(defaults):
    with Client(defaults) as client:
        assert client.request("GET", "/ka").status == 200
        started = time.monotonic()
        assert is_closed(client.sock, 5), "the idle keep-alive connection was not closed (quietly)"
        elapsed = time.monotonic() - started
    assert 0.7 <= elapsed < 2.5, f"closed after {elapsed:.2f}s with keepalive = 1"


@pytest.mark.timeout(10)
def test_stalled_second_head_on_a_keep_alive_connection_gets_408(defaults):
    with Client(defaults) as client:
        assert client.request("GET", "/first").status == 200
        client.sock.sendall(b"GET /second HTTP/1.1\r\nHost: t\r\n")
        answer, closed = recv_until_close(client.sock, 5)
    assert status_of(answer) == 408, answer[:200]
    assert closed


def test_limits_do_not_break_a_normal_exchange(small):
    with small.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = Reader(sock).response()
    assert response.status == 200
