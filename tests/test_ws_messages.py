"""WebSocket messages through a tunnel (issue #4): text, binary, 16 MiB, 10,000 in order,
ping/pong both ways, close codes and reasons both ways.

One proxy and one `websockets` backend serve the whole module; the backend's behaviour
is chosen by the path the client asks for."""

from __future__ import annotations

import asyncio
import os
import urllib.parse

import pytest
from backends import WebSocketBackend
from proxyproc import running_proxy
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wsutil import CLIENT_OPTIONS

SERVER_CLOSES = {}     # request path -> (code, reason) the backend received from the client


async def _behaviour(connection):
    path = connection.request.path
    parsed = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    kind = parsed.path.rsplit("/", 1)[-1]
    if kind == "echo":
        async for message in connection:
            await connection.send(message)
    elif kind == "server-close":
        await connection.recv()
        await connection.close(int(query["code"]), query["reason"])
    elif kind == "client-close":
        try:
            await connection.recv()
        except ConnectionClosed:
            pass
        SERVER_CLOSES[path] = (connection.close_code, connection.close_reason)
    elif kind == "server-ping":
        payload = (await connection.recv()).encode()
        pong = await connection.ping(payload)
        await asyncio.wait_for(pong, 5)
        await connection.send("pong received: " + payload.decode())
        await connection.wait_closed()


@pytest.fixture(scope="module")
def ws_proxy(tmp_path_factory):
    backend = WebSocketBackend(_behaviour)
    try:
        with running_proxy(tmp_path_factory.mktemp("ws-messages"),
                           [{"path": "/ws/", "to": f"ws://127.0.0.1:{backend.port}/back/", "upgrade": "websocket"}]) \
                as proxy:
            yield proxy
    finally:
        backend.close()


def _url(proxy, kind: str, query: str = "") -> str:
    return proxy.url(f"/ws/{kind}" + (f"?{query}" if query else ""), "ws")


def _run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_text_message_round_trip(ws_proxy):
    async def main():
        async with connect(_url(ws_proxy, "echo"), **CLIENT_OPTIONS) as ws:
            texts = ["hello", "", "é ü 漢字 🚀", "x" * 125, "y" * 126, "z" * 65536]
            for text in texts:
                await ws.send(text)
                echoed = await ws.recv()
                assert isinstance(echoed, str)
                assert echoed == text
    _run(main())


def test_binary_message_round_trip(ws_proxy):
    async def main():
        async with connect(_url(ws_proxy, "echo"), **CLIENT_OPTIONS) as ws:
            for payload in (b"\x00", bytes(range(256)), os.urandom(70000)):
                await ws.send(payload)
                echoed = await ws.recv()
                assert isinstance(echoed, bytes)
                assert echoed == payload
    _run(main())


@pytest.mark.timeout(60)
def test_sixteen_mebibyte_message(ws_proxy):
    payload = os.urandom(16 * 1024 * 1024)

    async def main():
        async with connect(_url(ws_proxy, "echo"), max_size=None, compression=None, **CLIENT_OPTIONS) as ws:
            await ws.send(payload)
            echoed = await ws.recv()
            assert len(echoed) == len(payload)
            assert echoed == payload
    _run(main(), 50)


def test_fragmented_message_is_reassembled(ws_proxy):
    fragments = ["frag-one ", "frag-two ", "", "frag-three"]

    async def main():
        async with connect(_url(ws_proxy, "echo"), compression=None, **CLIENT_OPTIONS) as ws:
            await ws.send(iter(fragments))          # one message, four frames (FIN on the last)
            assert await ws.recv() == "".join(fragments)
            await ws.send([b"\x01" * 70000, b"\x02" * 3])
            assert await ws.recv() == b"\x01" * 70000 + b"\x02" * 3
    _run(main())


def test_ten_thousand_small_messages_keep_their_order(ws_proxy):
    count = 10_000

    async def main():
        async with connect(_url(ws_proxy, "echo"), compression=None, max_queue=None, **CLIENT_OPTIONS) as ws:
            async def sender():
                for i in range(count):
                    await ws.send(f"m{i}")
            send_task = asyncio.create_task(sender())
            received = [await ws.recv() for _ in range(count)]
            await send_task
            assert received == [f"m{i}" for i in range(count)]
    _run(main(), 50)


def test_client_ping_gets_its_pong(ws_proxy):
    async def main():
        async with connect(_url(ws_proxy, "echo"), **CLIENT_OPTIONS) as ws:
            for payload in (b"", b"ping-1", os.urandom(125)):
                pong = await ws.ping(payload)
                latency = await asyncio.wait_for(pong, 5)
                assert latency >= 0
            await ws.send("still open")
            assert await ws.recv() == "still open"
    _run(main())


def test_backend_ping_gets_the_clients_pong(ws_proxy):
    async def main():
        async with connect(_url(ws_proxy, "server-ping"), **CLIENT_OPTIONS) as ws:
            await ws.send("srv-ping-data")
            assert await asyncio.wait_for(ws.recv(), 10) == "pong received: srv-ping-data"
    _run(main())


@pytest.mark.parametrize("code,reason", [(1000, "normal"), (4002, "backend says bye ✓"), (1001, "")])
def test_close_code_and_reason_from_backend_reach_client(ws_proxy, code, reason):
    async def main():
        query = urllib.parse.urlencode({"code": code, "reason": reason})
        async with connect(_url(ws_proxy, "server-close", query), **CLIENT_OPTIONS) as ws:
            await ws.send("close me")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == code
            assert ws.close_reason == reason
    _run(main())


@pytest.mark.parametrize("code,reason", [(1000, "done"), (4001, "client says bye ✓"), (3000, "x" * 120)])
def test_close_code_and_reason_from_client_reach_backend(ws_proxy, code, reason):
    query = urllib.parse.urlencode({"id": os.urandom(4).hex()})
    path = f"/back/client-close?{query}"

    async def main():
        async with connect(_url(ws_proxy, "client-close", query), **CLIENT_OPTIONS) as ws:
            await ws.close(code, reason)
            assert ws.close_code == code        # the backend echoed our close frame
        for _ in range(200):
            if path in SERVER_CLOSES:
                break
            await asyncio.sleep(0.025)
    _run(main())
    assert SERVER_CLOSES.get(path) == (code, reason)
