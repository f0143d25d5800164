"""Response heads as the client gets them, whatever the backend sent (review 2026-12-03-http1,
the response side).  Each test failed before its fix:

- #5: an empty line before the status line (llhttp skips it) became a field line of the head
  the client got; the stray CRLF is skipped, as Apache's mod_proxy_http does.
- #11: a 1xx or 204 head kept the backend's Content-Length or Transfer-Encoding (RFC 9110
  §8.6, §6.1: a server MUST NOT send them there), and a reason phrase with NUL or other
  control bytes (not in RFC 9112 §4's reason-phrase) was relayed as it came; it now gets
  the standard phrase of its status.
- #7: interim 1xx heads were relayed to HTTP/1.0 clients (RFC 9110 §15.2: a server MUST NOT),
  which take the first head for the final one.
- #4: an HTTP/1.0 request went to the backend as HTTP/1.0 without keep-alive (asking it to
  close), yet the connection was pooled when the answer was HTTP/1.1 without "close": the
  next request on it, another client's POST, got 502 when the backend closed as asked.
  Now such a request asks for keep-alive (as HAProxy does), and its connection is pooled
  only when the backend agrees in so many words (the HTTP/1.0 keep-alive handshake).

The backend is scripted: the request target picks the bytes it answers (`ANSWERS`), and the
client's bytes are judged by h11, a strict parser of its own.
"""

from __future__ import annotations

import time

import h11
import pytest
from proxyproc import running_proxy
from rawbackend import RawBackend, RawConn, respond, serve_simple

ANSWERS = {
    "/crlf-first": b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "/crlf-after-100": b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "/204-length": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    "/204-chunked": b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
    "/103-length": b"HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nLink: </a.css>\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    "/reason-nul": b"HTTP/1.1 200 O\x00K\x01\r\nContent-Length: 2\r\n\r\nhi",
    "/reason-del-10": b"HTTP/1.0 404 Not\x7fFound\r\nContent-Length: 2\r\n\r\nno",
    "/reason-escape-unknown": b"HTTP/1.1 299 \x1b[31mred\r\nContent-Length: 2\r\n\r\nhi",
    "/reason-kept": b"HTTP/1.1 200 Fine\tby me \xe9\r\nContent-Length: 2\r\n\r\nhi",
    "/interim": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
}


def _answer(head, body) -> bytes:
    return ANSWERS[head.target]


@pytest.fixture(scope="module")
def backend():
    b = RawBackend(lambda conn: serve_simple(conn, _answer), timeout=5)
    yield b
    b.close()


def _closes_after_http10(conn: RawConn) -> None:
    """A server that answers HTTP/1.1 to an HTTP/1.0 request, says nothing of the connection,
    and closes it a little later whatever the request asked (with a request it has not read:
    a reset).  Python's http.server does so for an HTTP/1.0 request without keep-alive."""
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        if head.version == "HTTP/1.0":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n1.0")
            time.sleep(0.3)
            return
        conn.send(respond(200, b"ok"))


def _http10_keep_alive(conn: RawConn) -> None:
    """An HTTP/1.0 server with the keep-alive handshake (nginx and Apache answer so too)."""
    while (head := conn.read_head()) is not None:
        if (head.get("connection") or "").lower() != "keep-alive":
            conn.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return
        conn.send(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture(scope="module")
def closing():
    b = RawBackend(_closes_after_http10, timeout=5)
    yield b
    b.close()


@pytest.fixture(scope="module")
def agreeing():
    b = RawBackend(_http10_keep_alive, timeout=5)
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend, closing, agreeing):
    routes = [{"path": "/old/", "to": closing.url + "/old/"}, {"path": "/agree/", "to": agreeing.url + "/agree/"},
              {"path": "/", "to": backend.url + "/"}]
    with running_proxy(tmp_path_factory.mktemp("heads"), routes, workers=1,
                       timeouts={"keepalive": 5, "proxy": 5, "connect": 2}) as p:
        yield p


def _exchange(proxy, target: str, version: bytes = b"HTTP/1.1") -> bytes:
    """One request on its own connection (Connection: close); every byte of the answer."""
    with proxy.connect(5) as sock:
        sock.sendall(b"GET " + target.encode() + b" " + version + b"\r\nHost: t\r\nConnection: close\r\n\r\n")
        out = bytearray()
        while chunk := sock.recv(65536):
            out += chunk
    return bytes(out)


def _h11_events(data: bytes) -> list:
    """What a strict HTTP/1.1 client makes of `data` (raises h11.RemoteProtocolError)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "t"), ("Connection", "close")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    events = []
    while not events or not isinstance(events[-1], (h11.EndOfMessage, h11.ConnectionClosed)):
        event = client.next_event()
        if event is h11.NEED_DATA:
            break
        events.append(event)
    return events


# == #5: an empty line before the status line =====================================================
@pytest.mark.parametrize("target", ["/crlf-first", "/crlf-after-100"])
def test_a_stray_crlf_before_the_status_line_is_skipped(proxy, target):
    data = _exchange(proxy, target)
    events = _h11_events(data)
    final = [e for e in events if isinstance(e, h11.Response)]
    assert len(final) == 1 and final[0].status_code == 200 and final[0].reason == b"OK", data
    assert b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data)) == b"hi"
    assert [e.status_code for e in events if isinstance(e, h11.InformationalResponse)] == \
        ([100] if target == "/crlf-after-100" else [])


# == #11: framing fields on 1xx/204, control bytes in a reason ===================================
@pytest.mark.parametrize("target", ["/204-length", "/204-chunked"])
def test_a_204_goes_without_content_length_or_transfer_encoding(proxy, target):
    data = _exchange(proxy, target)
    head = data[:data.index(b"\r\n\r\n") + 4]
    assert head.startswith(b"HTTP/1.1 204 No Content\r\n"), data
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower(), head
    assert b"\r\nX-A: 1\r\n" in head and data == head, data       # the other fields stay; no body
    assert [e.status_code for e in _h11_events(data) if isinstance(e, h11.Response)] == [204]


def test_an_interim_head_goes_without_content_length(proxy):
    data = _exchange(proxy, "/103-length")
    interim = data[:data.index(b"\r\n\r\n") + 4]
    assert interim == b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", data
    assert data[len(interim):].startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhi")


@pytest.mark.parametrize(("target", "status_line"), [
    ("/reason-nul", b"HTTP/1.1 200 OK"),
    ("/reason-del-10", b"HTTP/1.1 404 Not Found"),
    ("/reason-escape-unknown", b"HTTP/1.1 299 Unknown"),
    ("/reason-kept", b"HTTP/1.1 200 Fine\tby me \xe9"),      # HTAB and obs-text are reason text
])
def test_a_reason_with_control_bytes_gets_the_standard_phrase(proxy, target, status_line):
    data = _exchange(proxy, target)
    assert data.split(b"\r\n", 1)[0] == status_line, data
    events = _h11_events(data)
    assert isinstance(events[0], h11.Response) and events[0].reason == status_line.split(b" ", 2)[2]


# == #7: interim heads and HTTP/1.0 clients =======================================================
def test_an_http10_client_gets_no_interim_head_and_an_http11_client_gets_them(proxy):
    old = _exchange(proxy, "/interim", b"HTTP/1.0")
    assert old.startswith(b"HTTP/1.1 200 OK\r\n") and old.count(b"HTTP/1.1 ") == 1, old
    assert old.endswith(b"\r\n\r\nhi"), old
    events = _h11_events(_exchange(proxy, "/interim"))
    assert [e.status_code for e in events if isinstance(e, (h11.InformationalResponse, h11.Response))] == \
        [103, 100, 200]


# == #4: a backend connection an HTTP/1.0 request used ============================================
def test_a_connection_the_backend_did_not_agree_to_keep_is_not_reused(proxy, closing):
    for _ in range(2):
        assert _exchange(proxy, "/old/get", b"HTTP/1.0").endswith(b"\r\n\r\n1.0")
        with proxy.connect(5) as sock:        # another client, at once
            sock.sendall(b"POST /old/form HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nx=1")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert [h.target for h in closing.requests].count("/old/form") == 2


def test_an_http10_request_asks_the_backend_for_keep_alive_and_a_yes_keeps_the_connection(proxy, agreeing):
    with proxy.connect(5) as sock:
        for i in range(3):
            sock.sendall(b"GET /agree/%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
            head = b""
            while not head.endswith(b"\r\n\r\nok"):
                head += sock.recv(65536)
    assert [h.get("connection") for h in agreeing.requests] == ["keep-alive"] * 3
    assert len(agreeing.conns) == 1, "the backend connection was not reused"
