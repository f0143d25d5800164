"""An upgrade request with a body is forwarded as plain HTTP, body and all, without its upgrade
fields (review 2026-12-03-tunnels #3): `curl --http2 -d` and Feign offer `Upgrade: h2c` on every
POST and expect HTTP/1.1 when the server does not switch.  It was a 400 (HAProxy's 501 in its
#1381, fixed there the same way).  No tunnel ever opens for it: a backend's 101 is a 502."""

from __future__ import annotations

import pytest
from httpclient import read_raw_response
from rawbackend import RawBackend, RawConn, respond

H2C = (b"POST /form HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello")
WS_CHUNKED = (b"POST /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n")


def _app(conn: RawConn) -> None:
    while (head := conn.read_head()) is not None:
        body = conn.read_body(head)
        if head.target == "/switch":
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            continue
        seen = b"upgrade=%s connection=%s settings=%s body=%s" % (
            str(head.get("upgrade")).encode(), str(head.get("connection")).encode(),
            str(head.get("http2-settings")).encode(), body)
        conn.send(respond(200, seen))


@pytest.fixture
def env(proxy_factory):
    backend = RawBackend(_app)
    yield proxy_factory([{"path": "/", "to": backend.url + "/", "upgrade": ["websocket", "h2c"]}], workers=1)
    backend.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("request_bytes, body", [(H2C, b"hello"), (WS_CHUNKED, b"world")], ids=["h2c-length", "ws-chunked"])
def test_an_upgrade_request_with_a_body_is_plain_http(env, request_bytes, body):
    with env.connect() as sock:
        sock.sendall(request_bytes)
        response = read_raw_response(sock, timeout=5)
        assert response.status == 200, response
        assert response.body == b"upgrade=None connection=None settings=None body=" + body
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")       # the connection goes on
        assert read_raw_response(sock, timeout=5).status == 200


@pytest.mark.timeout(30)
def test_a_101_to_an_upgrade_request_with_a_body_is_a_502(env):
    with env.connect() as sock:
        sock.sendall(H2C.replace(b"/form", b"/switch"))
        assert read_raw_response(sock, timeout=5).status == 502
