"""The demo's page WebSocket (/ws) echoes through the proxy: python demo_ws_echo.py http://127.0.0.1:PORT/"""
import asyncio, sys, urllib.request
import websockets

async def main(url):
    page = urllib.request.urlopen(url, timeout=5).read().decode()
    assert "'/ws'" in page, "page does not open /ws"
    ws_url = url.replace("http://", "ws://").rstrip("/") + "/ws"
    async with websockets.connect(ws_url, open_timeout=5) as ws:
        for msg in ("hello", "x" * 70000, "last"):
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 5)
            print(f"sent {len(msg)} chars, echo equal: {got == msg}")
    st = urllib.request.urlopen(page.split('id="status" href="')[1].split('"')[0], timeout=5)
    print("status page", st.status)

asyncio.run(main(sys.argv[1]))
