"""1,000 WebSocket tunnels open at once, all echoing at the same moment (issue #4).

The backend is the bundled one (`python -m bench.backends`, its own process, raw epoll),
so this process holds only the 1,000 client sockets (the open-file limit here is 20,000)."""

from __future__ import annotations

import asyncio
import resource

import pytest
from proxyproc import total_tunnels
from support import wait_for
from websockets.asyncio.client import connect
from wsutil import CLIENT_OPTIONS

TUNNELS = 1000


@pytest.mark.timeout(90)
def test_thousand_concurrent_tunnels_echo_at_once(proxy_factory, bench_backend):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= TUNNELS + 200, f"open-file limit {soft} is too low for {TUNNELS} client sockets"
    proxy = proxy_factory([{"path": "/ws", "to": f"ws://127.0.0.1:{bench_backend.port}/ws"}])
    url = proxy.url("/ws", "ws")
    rss_before = sum(w["rss"] for w in proxy.status()["workers"])

    async def main():
        gate = asyncio.Semaphore(64)            # handshakes in flight, not tunnels open

        async def open_one(i):
            async with gate:
                return await connect(url, compression=None, **CLIENT_OPTIONS)
        clients = await asyncio.gather(*(open_one(i) for i in range(TUNNELS)))
        try:
            # Every tunnel is open now: the scoreboard says so.
            loop = asyncio.get_running_loop()
            count = await loop.run_in_executor(
                None, lambda: wait_for(lambda: total_tunnels(proxy) == TUNNELS, 10, 0.2,
                                       f"status to count {TUNNELS} tunnels"))
            assert count
            # Idle tunnels cost little: no buffer of their own (DESIGN.md: ~0.8 KB per pair).
            grown = sum(w["rss"] for w in proxy.status()["workers"]) - rss_before
            assert grown < 16 * 1024 * 1024, f"workers grew {grown >> 20} MiB for {TUNNELS} idle tunnels"

            async def echo(i, ws):
                messages = [f"tunnel {i} message {j}" for j in range(3)]
                for message in messages:
                    await ws.send(message)
                return [await ws.recv() for _ in messages] == messages
            results = await asyncio.gather(*(echo(i, ws) for i, ws in enumerate(clients)))
            assert all(results), f"{results.count(False)} tunnels echoed wrongly"
        finally:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    asyncio.run(asyncio.wait_for(main(), 75))
    wait_for(lambda: total_tunnels(proxy) == 0, 10, 0.2, "status to count no tunnels after the close")
