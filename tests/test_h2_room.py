"""A full worker accepts again when an HTTP/2 connection's last stream ends, as it does when an
HTTP/1.1 connection goes back to keep-alive: the idle connection is one it may close for room
(worker.admission)."""

from __future__ import annotations

import threading
import time

import pytest
from h2client import H2Client
from httpclient import read_raw_response
from rawbackend import RawBackend, RawConn, respond


@pytest.mark.timeout(60)
def test_a_full_worker_accepts_again_when_an_http2_stream_ends(proxy_factory):
    release = threading.Event()

    def app(conn: RawConn) -> None:
        while (head := conn.read_head()) is not None:
            conn.read_body(head)
            if head.target == "/busy":
                release.wait(20)
            conn.send(respond(200, head.target.encode()))

    backend = RawBackend(app)
    clients = []
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                              mpm={"workers": 1, "threads_per_child": 2, "max_request_workers": 2},
                              timeouts={"keepalive": 30, "client_header": 30}, start=False)
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        clients = [H2Client(proxy.port) for _ in range(2)]
        streams = [client.request("GET", "/busy") for client in clients]
        time.sleep(0.3)                     # both streams at the backend: the worker is full of requests
        with proxy.connect() as newcomer:
            newcomer.sendall(b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            time.sleep(0.3)                 # it waits in the backlog
            release.set()
            for client, stream_id in zip(clients, streams, strict=True):
                assert client.response(stream_id, timeout=5).status == 200
            started = time.monotonic()
            response = read_raw_response(newcomer, timeout=10)
            waited = time.monotonic() - started
        assert response.status == 200
        # Before: nothing resumed accepting, so the newcomer waited for an idle connection's
        # keep-alive timeout (30 s here; the read above gave up at 10).
        assert waited < 2.0, waited
    finally:
        release.set()
        for client in clients:
            client.close()
        backend.close()
