"""WebSocket Origin policy per route (issue #15, part 3): Cross-Site WebSocket Hijacking.

`origins` lists where an upgrade may come from; one from any other Origin gets 403 and never
reaches the backend.  No Origin (a non-browser client) passes unless `origins_required`.
The last test is the real thing: headless Chromium opens the WebSocket from a page of the
proxy's own origin (it echoes) and from a page of another origin (refused)."""

from __future__ import annotations

import asyncio

import pytest
from backends import HttpBackend
from httpclient import read_raw_response
from proxyproc import running_proxy, wait_log
from rawbackend import RawBackend, echo_after_101
from rawsock import read_head, status_of
from test_browser import Cdp, chromium  # noqa: F401 - chromium is a fixture
from websockets.asyncio.client import connect
from wsutil import upgrade_request

ALLOWED = ["https://app.example.com", "https://*.example.org", "http://localhost:8080"]


@pytest.fixture(scope="module")
def ws():
    backend = RawBackend(echo_after_101, timeout=20)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def plain():
    backend = HttpBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, ws, plain):
    routes = [
        {"path": "/ws/", "to": ws.ws_url + "/ws/", "origins": ALLOWED},
        {"path": "/strict/", "to": ws.ws_url + "/strict/", "origins": ALLOWED, "origins_required": True},
        {"path": "/plain/", "to": plain.url + "/plain/", "origins": ALLOWED},
    ]
    with running_proxy(tmp_path_factory.mktemp("origins"), routes, workers=1) as p:
        yield p


def _upgrade(proxy, path: str, *origins: str) -> tuple[int, bytes]:
    extra = "".join(f"Origin: {origin}\r\n" for origin in origins)
    with proxy.connect() as sock:
        sock.sendall(upgrade_request(path, extra=extra))
        head, _ = read_head(sock)
        return status_of(head), head


@pytest.mark.parametrize("origin", [
    "https://app.example.com", "HTTPS://App.Example.COM:443", "https://chat.eu.example.org",
    "http://localhost:8080",
])
def test_listed_origins_pass(proxy, ws, origin):
    assert _upgrade(proxy, "/ws/ok", origin)[0] == 101


@pytest.mark.parametrize("origins", [
    ("https://evil.example.net",), ("https://example.org",), ("http://a.example.org",),
    ("https://a.example.org:8443",), ("http://localhost:8081",), ("null",), ("https://app.example.com.evil.net",),
    ("https://app.example.com", "https://evil.example.net"),        # two Origins: ambiguous
])
def test_other_origins_get_403_and_never_reach_the_backend(proxy, ws, origins):
    before = len(ws.heads)
    status, head = _upgrade(proxy, "/ws/hijack", *origins)
    assert status == 403, head
    assert len(ws.heads) == before


def test_no_origin_passes_unless_required(proxy, ws):
    assert _upgrade(proxy, "/ws/cli")[0] == 101                  # curl, a service, a native app
    before = len(ws.heads)
    assert _upgrade(proxy, "/strict/cli")[0] == 403
    assert _upgrade(proxy, "/strict/app", "https://app.example.com")[0] == 101
    assert len(ws.heads) == before + 1


def test_plain_requests_are_not_the_policy_s_business(proxy, plain):
    with proxy.connect() as sock:
        sock.sendall(b"GET /plain/x HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example.net\r\n"
                     b"Connection: close\r\n\r\n")
        assert read_raw_response(sock).status == 200         # CORS is the backend's to decide


def test_the_refusal_is_logged_with_the_origin(proxy):
    _upgrade(proxy, "/ws/logged", "https://logged.example.net")
    assert "Origin 'https://logged.example.net' is not allowed here (403)" in wait_log(proxy, "logged.example")


# == a real browser ============================================================================
PAGE = """<!DOCTYPE html><title>loading</title><script>
const ws = new WebSocket("ws://127.0.0.1:%d/chat/");
ws.onopen = () => ws.send("hello");
ws.onmessage = (event) => { document.title = "echo:" + event.data; };
ws.onclose = (event) => { if (!document.title.startsWith("echo:")) document.title = "closed:" + event.code; };
</script>"""


@pytest.mark.timeout(90)
def test_chromium_cross_site_websocket_is_refused(proxy_factory, ws_backend, chromium):  # noqa: F811
    echo = ws_backend()
    pages = HttpBackend(lambda request, body: (200, [("Content-Type", "text/html")], page))
    proxy = proxy_factory([
        {"path": "/chat/", "to": echo.url + "/chat/", "origins": [f"http://127.0.0.1:{0}"]},
        {"path": "/", "to": pages.url + "/"},
    ], start=False, workers=1)
    proxy.config["routes"][0]["origins"] = [f"http://127.0.0.1:{proxy.port}"]     # the proxy's own origin
    page = (PAGE % proxy.port).encode()
    proxy.start()
    devtools = chromium.devtools_url()

    async def title_of(cdp, url: str) -> str:
        target = await cdp.call("Target.createTarget", {"url": "about:blank"})
        session = (await cdp.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))[
            "sessionId"]
        await cdp.call("Page.enable", session=session)
        navigated = await cdp.call("Page.navigate", {"url": url}, session)
        assert "errorText" not in navigated, navigated
        title = ""
        for _ in range(200):
            title = await cdp.evaluate("document.title", session)
            if title and title != "loading":
                return title
            await asyncio.sleep(0.1)
        return title

    async def main():
        async with connect(devtools, max_size=None, proxy=None, ping_interval=None) as cdp_ws:
            cdp = Cdp(cdp_ws)
            same = await title_of(cdp, proxy.url("/page"))                 # origin http://127.0.0.1:PROXY
            cross = await title_of(cdp, f"http://127.0.0.1:{pages.port}/page")   # another origin
            return same, cross
    try:
        same, cross = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        pages.close()
    assert same == "echo:hello"
    assert cross.startswith("closed:"), cross
    assert len(echo.requests) == 1                                   # the cross-site one never arrived
    needle = f"Origin 'http://127.0.0.1:{pages.port}' is not allowed here (403)"
    assert needle in wait_log(proxy, needle)
