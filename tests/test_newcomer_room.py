"""Which silent connection a full worker closes for room (worker.admission.make_room: the one
sending its first head the longest), with the TLS lane on (worker.newcomer: a silent Newcomer
once grew at PARK and re-joined `unserved` at its end, review 2026-12-06-newcomer #1) and off
(MPM_NATIVE_LANE_TLS=0)."""

from __future__ import annotations

import time

import pytest
from newcomerutil import REQ, newcomer, read_marked, shapes
from proxyproc import Proxy
from rawbackend import RawBackend
from support import serve_tls, wait_for

pytestmark = pytest.mark.timeout(120)

MPM_SMALL = {"threads_per_child": 4, "max_request_workers": 4, "server_limit": 1}


def _run(directory, tls_lane: str) -> dict:
    backend = RawBackend(shapes())
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1, mpm=MPM_SMALL,
                  environ={"MPM_NATIVE_LANE_TLS": tls_lane}, timeouts={"client_header": 10, "keepalive": 5})
    serve_tls(proxy, directory)
    proxy.start()
    socks = {}
    try:
        socks["oldest"] = newcomer(proxy)          # a Newcomer (TLS lane on)
        time.sleep(0.6)
        socks["younger"] = newcomer(proxy)         # a Newcomer, 0.6 s younger
        time.sleep(0.6)                            # the oldest is past PARK (1 s), the younger not
        socks["c"] = proxy.connect()
        time.sleep(0.02)
        socks["d"] = proxy.connect()
        wait_for(lambda: proxy.status()["totals"]["connections"] == 4, 5, 0.02, "a full worker")
        with proxy.connect() as sock:                 # the fifth: room is made for it
            sock.sendall(REQ % b"room")
            assert read_marked(sock, 5).endswith(b"GET /room xff=127.0.0.1<closed>")
        return {name: read_marked(sock, 0.3).endswith(b"<closed>") for name, sock in socks.items()}
    finally:
        for sock in socks.values():
            sock.close()
        proxy.stop()
        backend.close()


def test_room_is_made_by_closing_the_oldest_silent_connection(tmp_path):
    python = _run(tmp_path / "python", "0")
    lane = _run(tmp_path / "lane", "1")
    assert python == {"oldest": True, "younger": False, "c": False, "d": False}
    assert lane == python
