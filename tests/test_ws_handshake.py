"""The WebSocket handshake through the proxy (issue #4): what reaches the backend, what
is negotiated end to end, the bytes that travel behind either head, and upgrades the
backend turns down (the connection goes on as HTTP).

Routes of the module's proxy:
    /dead/   -> a port nobody listens on
    /ws/     -> a `websockets` echo backend that records each handshake request
    /raw/    -> a raw-socket backend (what it does is chosen by each test: `_use`)
    /plain/  -> ws:// target on an h11 HTTP backend (404 for paths with "missing")
    /cond/   -> the WebSocket backend when `Upgrade: websocket`, else the HTTP backend
    ^/app/([a-z]+)/socket$ -> the WebSocket backend's /back/$1
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from backends import HttpBackend, WebSocketBackend
from proxyproc import running_proxy, tunnel_lines
from rawbackend import RawBackend, RawConn, echo, echo_after_101
from rawsock import header_values, http_response_body, read_head, recv_exact, status_of, tokens
from support import free_port, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wsutil import (
    CLIENT_OPTIONS,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    frame,
    read_frame,
    switch_response,
    upgrade_of,
    upgrade_request,
    ws_accept,
    ws_key,
)

WELCOME = frame(b"welcome from the backend", OP_TEXT, masked=False)


# == what the raw backend does (each test picks one with `_use`) ====================================
def _welcome_with_the_101_then_echo_frames(conn: RawConn) -> None:
    """The 101 and a first frame in one write (they arrive in one segment), then echo each
    frame unmasked, answering a close frame with one (so a real client library closes cleanly)."""
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw) + WELCOME)
    while True:
        opcode, payload = read_frame(conn.sock, conn.buf)
        conn.send(frame(payload, opcode, masked=False))
        if opcode == OP_CLOSE:
            return


def _late_101_then_record_the_early_frame(conn: RawConn) -> None:
    """Think for 0.5 s before the 101 (the client sends a frame meanwhile: it must wait for
    our 101, not vanish); record that frame under the request target."""
    head = conn.read_head()
    time.sleep(0.5)
    conn.send(switch_response("websocket", head.raw))
    conn.backend.results[head.target] = recv_exact(conn.sock, len(frame(b"sent before the 101")), conn.buf)


def _dribble_the_101_with_a_frame_in_the_last_piece(conn: RawConn) -> None:
    """The 101 head goes out in four pieces; the last piece carries the first frame.  Then echo."""
    head = conn.read_head()
    response = switch_response("websocket", head.raw) + WELCOME
    for piece in (response[:9], response[9:40], response[40:-10], response[-10:]):
        conn.send(piece)
        time.sleep(0.05)
    echo(conn)


def _101_with_end_to_end_and_hop_by_hop_headers(conn: RawConn) -> None:
    """A 101 carrying end-to-end headers (which must pass) and hop-by-hop ones, among them one
    named by `Connection` (which must stop at the proxy).  Then echo."""
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw, extra=(
        "Sec-WebSocket-Protocol: one\r\nSec-WebSocket-Extensions: x-custom; p=1\r\n"
        "Set-Cookie: sid=42; Path=/\r\nX-Backend: raw\r\n"
        "Keep-Alive: timeout=5\r\nX-Hop: secret\r\nConnection: X-Hop\r\n")))
    echo(conn)


def _plain_answers_until_an_upgrade(conn: RawConn) -> None:
    """Answer plain requests `200 first` on a kept-alive connection; the first upgrade request
    (on this connection, if the proxy reuses it, or a new one) gets a 101 and an echo."""
    while (head := conn.read_head()) is not None:
        if head.get("upgrade") is None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            continue
        conn.send(switch_response(upgrade_of(head.raw) or "websocket", head.raw))
        echo(conn)
        return


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    def select(connection, offered):
        return "chat.v1" if "chat.v1" in offered else None
    ws = WebSocketBackend(select_subprotocol=select)
    raw = RawBackend(echo_after_101, timeout=20)
    http = HttpBackend(lambda req, body: (404, [("Content-Type", "text/plain")], b"no such thing")
                       if "missing" in req["target"] else (200, [("Content-Type", "text/plain")], b"plain hello"))
    routes = [
        {"path": "/dead/", "to": f"ws://127.0.0.1:{free_port()}/"},
        {"path": "/ws/", "to": f"ws://127.0.0.1:{ws.port}/back/"},
        {"path": "/raw/", "to": raw.ws_url + "/raw/"},
        {"path": "/plain/", "to": f"ws://127.0.0.1:{http.port}/plain/"},
        # RewriteCond %{HTTP:Upgrade} websocket [NC] -> the WebSocket backend, else plain HTTP
        {"path": "/cond/", "when": {"header": {"Upgrade": "websocket"}}, "to": f"ws://127.0.0.1:{ws.port}/back/"},
        {"path": "/cond/", "to": f"http://127.0.0.1:{http.port}/plain/"},
        # ProxyPassMatch
        {"match": "^/app/([a-z]+)/socket$", "to": f"ws://127.0.0.1:{ws.port}/back/$1"},
    ]
    try:
        with running_proxy(tmp_path_factory.mktemp("ws-handshake"), routes) as proxy:
            yield proxy, ws, raw, http
    finally:
        ws.close()
        raw.close()
        http.close()


def _use(env, behaviour):
    """The module's proxy and its raw backend, running `behaviour` for the connections this test makes."""
    proxy, _, raw, _ = env
    raw.handler = behaviour
    return proxy, raw


def _run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# == what the backend sees =======================================================================
def test_handshake_reaches_backend_intact(env):
    proxy, ws_backend, _, _ = env
    query = "a=1&b=two%20words&c=%E2%9C%93&empty="
    sent = {}

    async def main():
        async with connect(proxy.url(f"/ws/handshake?{query}", "ws"), origin="https://app.example",
                           subprotocols=["chat.v2", "chat.v1"],
                           additional_headers=[("Cookie", "session=abc123; theme=dark"),
                                               ("X-Forwarded-For", "203.0.113.7")],
                           **CLIENT_OPTIONS) as ws:
            sent.update(ws.request.headers.raw_items())
            await ws.send("hi")
            assert await ws.recv() == "hi"
    _run(main())
    request = next(r for r in ws_backend.requests if r.path.startswith("/back/handshake"))
    headers = request.headers
    assert request.path == f"/back/handshake?{query}"
    assert headers["Upgrade"].lower() == "websocket"
    assert "upgrade" in {t.strip().lower() for t in headers["Connection"].split(",")}
    for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"):
        assert headers.get_all(name) == [sent[name]], name
    assert headers["Origin"] == "https://app.example"
    assert headers.get_all("Cookie") == ["session=abc123; theme=dark"]
    assert headers.get_all("X-Forwarded-For") == ["203.0.113.7, 127.0.0.1"]
    assert headers.get_all("X-Forwarded-Proto") == ["http"]
    assert headers.get_all("X-Forwarded-Host") == [f"127.0.0.1:{proxy.port}"]


def test_browser_style_handshake_with_keep_alive_upgrade_and_repeated_headers(env):
    """Firefox sends `Connection: keep-alive, Upgrade` and `Upgrade: websocket`; some
    clients spell it `WebSocket`; extensions may come on two lines: all must pass."""
    proxy, raw = _use(env, echo_after_101)
    key = ws_key()
    extra = ("Origin: http://origin.test\r\nCookie: a=1\r\nSec-WebSocket-Protocol: one, two\r\n"
             "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: x-custom; p=1\r\n"
             "User-Agent: firefox-ish\r\n")
    request = upgrade_request("/raw/browser?q=%2Fx", upgrade="WebSocket", connection="keep-alive, Upgrade",
                              key=key, extra=extra)
    with proxy.connect() as sock:
        sock.sendall(request)
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        assert header_values(head, "Sec-WebSocket-Accept") == [ws_accept(key)]
        assert "upgrade" in tokens(head, "Connection")
        sock.sendall(frame(b"hello raw", OP_TEXT))
        # The raw backend echoes bytes verbatim, so our own masked frame comes back.
        opcode, payload = read_frame(sock, buf)
        assert (opcode, payload) == (OP_TEXT, b"hello raw")
    seen = next(h for h in raw.heads if b"/raw/browser" in h)
    assert seen.startswith(b"GET /raw/browser?q=%2Fx HTTP/1.1\r\n")
    assert [v.lower() for v in header_values(seen, "Upgrade")] == ["websocket"]
    assert tokens(seen, "Connection") == {"upgrade"}      # keep-alive is hop-by-hop: not forwarded
    assert header_values(seen, "Sec-WebSocket-Key") == [key]
    assert header_values(seen, "Sec-WebSocket-Version") == ["13"]
    assert header_values(seen, "Sec-WebSocket-Protocol") == ["one, two"]
    assert header_values(seen, "Sec-WebSocket-Extensions") == ["permessage-deflate", "x-custom; p=1"]
    assert header_values(seen, "Origin") == ["http://origin.test"]
    assert header_values(seen, "Cookie") == ["a=1"]
    assert header_values(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(seen, "X-Forwarded-Proto") == ["http"]
    assert header_values(seen, "X-Forwarded-Host") == ["proxy.test"]


def test_backend_101_headers_reach_the_client_without_hop_by_hop_ones(env):
    """End-to-end headers of the backend's 101 reach the client; hop-by-hop ones, including
    one named on a second `Connection` line, do not (that second line was once ignored)."""
    proxy, _ = _use(env, _101_with_end_to_end_and_hop_by_hop_headers)
    key = ws_key()
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/raw/headers101", key=key, extra="Sec-WebSocket-Protocol: one, two\r\n"))
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        assert header_values(head, "Sec-WebSocket-Accept") == [ws_accept(key)]
        assert header_values(head, "Sec-WebSocket-Protocol") == ["one"]
        assert header_values(head, "Sec-WebSocket-Extensions") == ["x-custom; p=1"]
        assert header_values(head, "Set-Cookie") == ["sid=42; Path=/"]
        assert header_values(head, "X-Backend") == ["raw"]
        assert [v.lower() for v in header_values(head, "Upgrade")] == ["websocket"]
        assert tokens(head, "Connection") == {"upgrade"}
        assert not header_values(head, "Keep-Alive"), head
        assert not header_values(head, "X-Hop"), head
        sock.sendall(b"x")
        assert recv_exact(sock, 1, buf) == b"x"


def test_connection_split_over_two_header_lines_is_one_list(env):
    """RFC 9110 §5.3: `Connection: keep-alive` + `Connection: Upgrade, X-Hop` is the list
    "keep-alive, Upgrade, X-Hop": it is an upgrade, and X-Hop is hop-by-hop.  Guards against
    the header filter reading only the first `Connection` line and forwarding `X-Hop`."""
    proxy, raw = _use(env, echo_after_101)
    request = (b"GET /raw/two-connection-lines HTTP/1.1\r\nHost: proxy.test\r\nConnection: keep-alive\r\n"
               b"Upgrade: websocket\r\nConnection: Upgrade, X-Hop\r\nX-Hop: secret\r\n"
               b"Sec-WebSocket-Key: " + ws_key().encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with proxy.connect() as sock:
        sock.sendall(request)
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
    seen = next(h for h in raw.heads if b"/raw/two-connection-lines" in h)
    assert not header_values(seen, "X-Hop"), seen
    assert [v.lower() for v in header_values(seen, "Upgrade")] == ["websocket"]


# == negotiation passes through =====================================================================
def test_subprotocol_negotiation_passes_through(env):
    proxy, _, _, _ = env

    async def main():
        async with connect(proxy.url("/ws/sub", "ws"), subprotocols=["chat.v2", "chat.v1"], **CLIENT_OPTIONS) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == ["chat.v1"]
            await ws.send("with a subprotocol")
            assert await ws.recv() == "with a subprotocol"
        async with connect(proxy.url("/ws/nosub", "ws"), **CLIENT_OPTIONS) as ws:
            assert ws.subprotocol is None
            assert "Sec-WebSocket-Protocol" not in ws.response.headers
    _run(main())


def test_permessage_deflate_negotiated_end_to_end(env):
    proxy, ws_backend, _, _ = env
    payload = "compress me " * 100_000          # 1.2 MB that deflates to a few KB

    async def main():
        async with connect(proxy.url("/ws/deflate?id=pmd1", "ws"), max_size=None, **CLIENT_OPTIONS) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            await ws.send(payload)
            assert await ws.recv() == payload
        async with connect(proxy.url("/ws/deflate?id=pmd0", "ws"), compression=None, **CLIENT_OPTIONS) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("uncompressed")
            assert await ws.recv() == "uncompressed"
    _run(main())
    request = next(r for r in ws_backend.requests if r.path == "/back/deflate?id=pmd1")
    assert "permessage-deflate" in request.headers["Sec-WebSocket-Extensions"]
    # The frames really crossed the tunnel compressed: far fewer bytes than the text.
    line = wait_for(lambda: tunnel_lines(proxy, "/ws/deflate?id=pmd1"), 5, what="access-log line")[0]
    fields = dict(part.split("=", 1) for part in line.split() if part.startswith("tunnel_"))
    assert 0 < int(fields["tunnel_in"]) < len(payload) // 20, line
    assert 0 < int(fields["tunnel_out"]) < len(payload) // 20, line


# == bytes behind either head =========================================================================
def test_client_frame_in_the_same_packet_as_the_handshake(env):
    proxy, _, _, _ = env
    early = frame(b"early bird", OP_TEXT) + frame(b"are you there", OP_PING) + frame(b"\x00\x01", 0x2)
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/ws/early") + early)      # one write: one segment
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        frames = [read_frame(sock, buf) for _ in range(3)]
    # The backend answers the ping at once but echoes data from its handler, so the
    # pong may come first; the two data frames keep their order.
    assert [f for f in frames if f[0] != OP_PONG] == [(OP_TEXT, b"early bird"), (0x2, b"\x00\x01")]
    assert (OP_PONG, b"are you there") in frames


def test_backend_data_in_the_same_write_as_its_101(env):
    proxy, _ = _use(env, _welcome_with_the_101_then_echo_frames)
    key = ws_key()
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/raw/welcome", key=key))
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        assert header_values(head, "Sec-WebSocket-Accept") == [ws_accept(key)]
        assert read_frame(sock, buf) == (OP_TEXT, b"welcome from the backend")
        sock.sendall(frame(b"and back", OP_TEXT))
        assert read_frame(sock, buf) == (OP_TEXT, b"and back")

    async def main():       # the same through a real client library
        async with connect(proxy.url("/raw/welcome-lib", "ws"), compression=None, **CLIENT_OPTIONS) as ws:
            assert await ws.recv() == "welcome from the backend"
    _run(main())


def test_backend_101_split_across_writes_with_data_in_the_last(env):
    proxy, _ = _use(env, _dribble_the_101_with_a_frame_in_the_last_piece)
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/raw/split"))
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        assert read_frame(sock, buf) == (OP_TEXT, b"welcome from the backend")


def test_client_bytes_sent_while_the_101_is_awaited_reach_the_backend(env):
    proxy, raw = _use(env, _late_101_then_record_the_early_frame)
    early = frame(b"sent before the 101")
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/raw/delayed"))
        time.sleep(0.15)                 # the backend holds its 101 for 0.5 s
        sock.sendall(early)
        head, _ = read_head(sock)
        assert status_of(head) == 101, head
        wait_for(lambda: "/raw/delayed" in raw.results, 5, what="backend to read the early frame")
    assert raw.results["/raw/delayed"] == early


# == upgrades the backend declines; ws:// targets and plain HTTP ==================================
@pytest.mark.parametrize("status", [200, 404])
def test_backend_declining_the_upgrade_is_relayed_and_connection_stays_http(env, status):
    proxy, _, _, http = env
    path = "/plain/decline" + ("-missing" if status == 404 else "") + f"?s={status}"
    with proxy.connect() as sock:
        sock.settimeout(5)
        sock.sendall(upgrade_request(path))
        head, buf = read_head(sock)
        assert status_of(head) == status, head
        assert http_response_body(sock, head, buf) == (b"no such thing" if status == 404 else b"plain hello")
        assert "close" not in tokens(head, "Connection"), head
        assert not header_values(head, "Upgrade"), head
        # A second request on the same connection is served as plain HTTP.
        sock.sendall(f"GET /plain/second?s={status} HTTP/1.1\r\nHost: proxy.test\r\n\r\n".encode())
        head2, buf = read_head(sock, buf)
        assert status_of(head2) == 200, head2
        assert http_response_body(sock, head2, buf) == b"plain hello"
    first = next(r for r in http.requests if r["target"] == path)
    assert any(k.lower() == "upgrade" for k, _ in first["headers"])       # it was offered the upgrade
    second = next(r for r in http.requests if r["target"] == f"/plain/second?s={status}")
    assert not any(k.lower() == "upgrade" for k, _ in second["headers"])


def test_websocket_client_sees_the_backends_refusal(env):
    proxy, _, _, _ = env

    async def main():
        with pytest.raises(InvalidStatus) as info:
            async with connect(proxy.url("/plain/missing", "ws"), **CLIENT_OPTIONS):
                pass
        assert info.value.response.status_code == 404
        assert info.value.response.body == b"no such thing"
    _run(main())


def test_ws_target_serves_plain_http_gets(env):
    proxy, _, _, http = env
    with proxy.connect() as sock:
        sock.settimeout(5)
        for i in range(3):
            sock.sendall(f"GET /plain/page{i}?x=y HTTP/1.1\r\nHost: proxy.test\r\n\r\n".encode())
            head, buf = read_head(sock)
            assert status_of(head) == 200, head
            assert http_response_body(sock, head, buf) == b"plain hello"
    request = next(r for r in http.requests if r["target"] == "/plain/page0?x=y")
    names = {k.lower() for k, _ in request["headers"]}
    assert "upgrade" not in names
    assert all("upgrade" not in v.lower() for k, v in request["headers"] if k.lower() == "connection")


def test_many_handshakes_in_parallel_each_get_their_own_accept(env):
    """Every client gets the Sec-WebSocket-Accept for its own key (no cross-wiring)."""
    proxy, _ = _use(env, echo_after_101)
    errors = []

    def one(i):
        try:
            key = ws_key()
            with proxy.connect() as sock:
                sock.sendall(upgrade_request(f"/raw/parallel{i}", key=key) + frame(f"n{i}".encode(), OP_TEXT))
                head, buf = read_head(sock)
                assert header_values(head, "Sec-WebSocket-Accept") == [ws_accept(key)]
                assert read_frame(sock, buf) == (OP_TEXT, f"n{i}".encode())
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors, errors


def test_backend_gets_nothing_but_the_frames_after_its_101(env):
    """Bytes relayed after the 101 are exactly what the client sent (no head residue)."""
    proxy, _ = _use(env, echo_after_101)
    payload = bytes(range(256)) * 64
    with proxy.connect() as sock:
        sock.sendall(upgrade_request("/raw/exact"))
        head, buf = read_head(sock)
        assert status_of(head) == 101
        sock.sendall(payload)
        assert recv_exact(sock, len(payload), buf) == payload
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""


# == upgrades among other requests on one connection =================================================
def test_upgrade_pipelined_behind_a_plain_request(env):
    proxy, _, _, _ = env
    with proxy.connect() as sock:
        sock.sendall(b"GET /plain/before-upgrade HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
                     + upgrade_request("/ws/pipelined") + frame(b"after both heads", OP_TEXT))
        head, buf = read_head(sock)
        assert status_of(head) == 200, head
        assert http_response_body(sock, head, buf) == b"plain hello"
        head, buf = read_head(sock, buf)
        assert status_of(head) == 101, head
        assert read_frame(sock, buf) == (OP_TEXT, b"after both heads")


def test_upgrade_after_a_keep_alive_exchange_on_the_same_connections(env):
    """A plain exchange first (its backend connection goes back to the pool), then an
    upgrade on the same client connection to the same backend."""
    proxy, _ = _use(env, _plain_answers_until_an_upgrade)
    with proxy.connect() as sock:
        sock.sendall(b"GET /raw/keepalive-first HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        head, buf = read_head(sock)
        assert status_of(head) == 200, head
        assert http_response_body(sock, head, buf) == b"first"
        sock.sendall(upgrade_request("/raw/keepalive-second"))
        head, buf = read_head(sock, buf)
        assert status_of(head) == 101, head
        sock.sendall(b"tunnel after keep-alive")
        assert recv_exact(sock, 23, buf) == b"tunnel after keep-alive"


def test_http10_upgrade_request_is_not_upgraded(env):
    """RFC 9110 §7.8: a server that receives Upgrade in an HTTP/1.0 request MUST ignore it.
    The backend gets a plain request and the client a plain answer.  Guards against a 1.0
    request's Upgrade being forwarded, which let a backend's 101 open a tunnel."""
    proxy, _, _, http = env
    with proxy.connect() as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /plain/http10-upgrade HTTP/1.0\r\nHost: proxy.test\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        head, buf = read_head(sock)
        assert status_of(head) == 200, head
    request = next(r for r in http.requests if r["target"] == "/plain/http10-upgrade")
    assert not [v for k, v in request["headers"] if k.lower() == "upgrade"], request["headers"]
    assert all("upgrade" not in v.lower() for k, v in request["headers"] if k.lower() == "connection")


def test_upgrade_to_a_backend_that_is_down_is_a_gateway_error(env):
    proxy, _, _, _ = env

    async def main():
        with pytest.raises(InvalidStatus) as info:
            async with connect(proxy.url("/dead/x", "ws"), **CLIENT_OPTIONS):
                pass
        assert info.value.response.status_code in (502, 503)
    _run(main())


# == routing upgrades ==================================================================================
def test_rewritecond_style_route_sends_upgrades_to_the_websocket_backend(env):
    proxy, ws_backend, _, http = env

    async def main():
        async with connect(proxy.url("/cond/chat?room=1", "ws"), **CLIENT_OPTIONS) as ws:
            await ws.send("conditional")
            assert await ws.recv() == "conditional"
    _run(main())
    assert any(r.path == "/back/chat?room=1" for r in ws_backend.requests)
    with proxy.connect() as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /cond/page HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        head, buf = read_head(sock)
        assert status_of(head) == 200, head
        assert http_response_body(sock, head, buf) == b"plain hello"
        # [NC]: the condition matches whatever the case of the header's value.
        sock.sendall(upgrade_request("/cond/shout", upgrade="WEBSOCKET") + frame(b"loud", OP_TEXT))
        head, buf = read_head(sock, buf)
        assert status_of(head) == 101, head
        assert read_frame(sock, buf) == (OP_TEXT, b"loud")
    assert any(r["target"] == "/plain/page" for r in http.requests)


def test_proxypassmatch_route_tunnels_websockets(env):
    proxy, ws_backend, _, _ = env

    async def main():
        async with connect(proxy.url("/app/orders/socket?since=5", "ws"), **CLIENT_OPTIONS) as ws:
            await ws.send("matched")
            assert await ws.recv() == "matched"
    _run(main())
    assert any(r.path == "/back/orders?since=5" for r in ws_backend.requests)
