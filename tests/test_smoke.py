"""The shortest path through everything: a GET and a WebSocket echo through a real master."""

import asyncio

import h11
from websockets.asyncio.client import connect


def _get(proxy, path):
    conn = h11.Connection(h11.CLIENT)
    with proxy.connect() as sock:
        sock.sendall(conn.send(h11.Request(method="GET", target=path, headers=[("Host", "example.test")])))
        sock.sendall(conn.send(h11.EndOfMessage()))
        response, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return response, body


def test_get_and_websocket_through_the_proxy(proxy_factory, http_backend, ws_backend):
    backend = http_backend()
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/ws/", "to": echo.url + "/"}, {"path": "/", "to": backend.url + "/"}])
    response, body = _get(proxy, "/hello?x=1")
    assert response.status_code == 200 and body == b"hello"
    assert backend.requests[0]["target"] == "/hello?x=1"

    async def talk():
        async with connect(proxy.url("/ws/chat", "ws")) as ws:
            await ws.send("ping me")
            return await ws.recv()
    assert asyncio.run(talk()) == "ping me"
    assert echo.requests[0].path == "/chat"
