"""HTTP/2 through reloads and stops (issue #17): GOAWAY names the last stream the old worker
serves, streams under way finish there, newer ones are refused (REFUSED_STREAM: safe to retry),
and the connection closes once they are done.  An HTTP/2 connection cannot be handed to the
next generation (its state lives in this process): RFC 8441 tunnels on it stay until they
end or `graceful_timeout`, and `mpmctl status` counts them meanwhile."""

from __future__ import annotations

import time

import pytest
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import wait_for

REFUSED_STREAM = 0x7


def _app(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        if head.target.startswith("/slow"):
            time.sleep(1.5)
        conn.send(respond(200, head.target.encode()))


@pytest.fixture
def env(tmp_path, ws_backend):
    backend, echo = RawBackend(_app), ws_backend()
    proxy = Proxy(tmp_path, [{"path": "/ws/", "to": echo.url + "/"}, {"path": "/", "to": backend.url + "/"}],
                  workers=1, mpm={"graceful_timeout": 3})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    yield proxy
    proxy.stop()
    backend.close()


@pytest.mark.timeout(60)
def test_reload_sends_goaway_and_the_streams_under_way_finish(env):
    proxy = env
    old_pid = proxy.worker_pids()[0]
    client = H2Client(proxy.port)
    assert client.get("/first").status == 200
    slow = client.request("GET", "/slow/in-flight")
    time.sleep(0.3)
    assert proxy.reload().returncode == 0
    client.wait(lambda: client.goaway is not None, 10, "GOAWAY")
    assert client.goaway.last_stream_id == slow and client.goaway.error_code == 0
    late = client.request("GET", "/after-goaway")                     # a client that did not listen
    status = proxy.status()
    old = [w for w in status["workers"] if w["pid"] == old_pid][0]
    assert old["state"] == "stopping" and old["h2_connections"] == 1 and old["h2_streams"] >= 1, old
    assert client.response(slow).status == 200                        # finished by the old worker
    assert client.response(late).reset == REFUSED_STREAM
    client.wait(lambda: client.closed, 5, "the old worker to close the connection")
    wait_for(lambda: old_pid not in proxy.worker_pids(current_only=False), 5, what="the old worker to exit")
    fresh = H2Client(proxy.port)
    assert fresh.get("/new-generation").status == 200
    fresh.close()


@pytest.mark.timeout(60)
def test_a_websocket_stream_stays_with_its_worker_until_graceful_timeout(env):
    proxy = env
    old_pid = proxy.worker_pids()[0]
    client = H2Client(proxy.port)
    ws = client.websocket("/ws/through-reload")
    assert ws.status == 200
    client.ws_send(ws.id, b"before")
    assert client.ws_recv(ws.id) == (2, b"before")
    started = time.monotonic()
    assert proxy.reload().returncode == 0
    client.wait(lambda: client.goaway is not None, 10, "GOAWAY")
    client.ws_send(ws.id, b"after")                                   # still relayed by the old worker
    assert client.ws_recv(ws.id) == (2, b"after")
    old = [w for w in proxy.status()["workers"] if w["pid"] == old_pid][0]
    assert old["tunnels"] == 1 and old["h2_streams"] == 1, old
    client.wait(lambda: client.closed, 10, "graceful_timeout to end the connection")
    assert 2.0 < time.monotonic() - started < 8                      # graceful_timeout: 3
    wait_for(lambda: old_pid not in proxy.worker_pids(current_only=False), 5, what="the old worker to exit")
    line = wait_for(lambda: [x for x in proxy.access_lines() if '"CONNECT /ws/through-reload HTTP/2.0"' in x], 5)
    assert "tunnel_out=" in line[0]


@pytest.mark.timeout(60)
def test_stop_lets_the_streams_under_way_finish(env):
    proxy = env
    client = H2Client(proxy.port)
    slow = client.request("GET", "/slow/at-stop")
    time.sleep(0.3)
    proxy.proc.send_signal(15)                                        # SIGTERM: graceful stop
    client.wait(lambda: client.goaway is not None, 10, "GOAWAY")
    assert client.response(slow).status == 200
    client.wait(lambda: client.closed, 5, "the connection to close")
    assert proxy.proc.wait(10) == 0
