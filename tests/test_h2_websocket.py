"""WebSockets over HTTP/2 (RFC 8441, issue #17): an extended CONNECT on a stream becomes an
HTTP/1.1 `Upgrade: websocket` to the backend; the stream carries the WebSocket both ways,
with flow control, half-close as END_STREAM, RST_STREAM for aborts, the route's idle timeout,
and one access-log line with the bytes."""

from __future__ import annotations

import re
import socket
import ssl
import time
import urllib.request

import pytest
import trustme
from backends import WebSocketBackend
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend, RawConn
from rawsock import header_values
from support import free_port, wait_for
from wsutil import switch_response

CONNECT_ERROR, CANCEL = 0xA, 0x8


def _plain_answer(conn: RawConn, head) -> None:
    """No 101: an ordinary answer."""
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
    time.sleep(0.5)


def _101_with_a_wrong_accept(conn: RawConn, head) -> None:
    """A 101 whose Sec-WebSocket-Accept is not for the request's key."""
    conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n")
    time.sleep(0.5)


def _hello_then_half_close(conn: RawConn, head) -> None:
    """Say hello, close our sending side, keep reading: record what came ("halfclose")."""
    conn.send(switch_response("websocket", head.raw, "Sec-WebSocket-Protocol: chat\r\n") + b"hello")
    conn.sock.shutdown(socket.SHUT_WR)
    received = bytearray(conn.take_buffered())
    while data := conn.sock.recv(65536):
        received += data
    conn.backend.results["halfclose"] = bytes(received)
    conn.backend.event("halfclose").set()


def _echo_until_eof(conn: RawConn, head) -> None:
    """101, echo until EOF, then signal "echo-eof"."""
    conn.send(switch_response("websocket", head.raw) + conn.take_buffered())
    while data := conn.sock.recv(65536):
        conn.sock.sendall(data)
    conn.backend.event("echo-eof").set()


# Tests here meet several of these on one connection, so the path picks one (default: echo).
BEHAVIOURS = {"/plain": _plain_answer, "/badaccept": _101_with_a_wrong_accept, "/halfclose": _hello_then_half_close}


def _scripted(conn: RawConn) -> None:
    head = conn.read_head()
    BEHAVIOURS.get(head.target, _echo_until_eof)(conn, head)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    directory = tmp_path_factory.mktemp("h2ws")
    echo, raw, ca = WebSocketBackend(), RawBackend(_scripted, timeout=20), trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "key.pem")
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    routes = [{"path": "/ws/", "to": echo.url + "/"},
              {"path": "/nows/", "to": f"http://127.0.0.1:{raw.port}/", "upgrade": []},
              {"path": "/idle/", "to": f"ws://127.0.0.1:{raw.port}/", "timeout": 1},
              {"path": "/raw/", "to": f"ws://127.0.0.1:{raw.port}/"}]
    admin_port = free_port()
    proxy = Proxy(directory, routes, workers=1, admin={"listen": f"127.0.0.1:{admin_port}"})
    proxy.admin_port = admin_port
    tls_port = free_port()
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"},
                              {"address": f"127.0.0.1:{tls_port}", "tls": {"cert": cert_path, "key": key_path}}]
    proxy.start()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    proxy.tls_port, proxy.tls_context = tls_port, context
    yield proxy, echo, raw
    proxy.stop()
    echo.close()
    raw.close()


@pytest.mark.timeout(60)
def test_websocket_over_an_h2_stream_echoes_and_is_logged(env):
    proxy, echo, _ = env
    client = H2Client(proxy.tls_port, tls=proxy.tls_context)
    settings = client.wait(lambda: client.remote_settings, 5, "SETTINGS")
    assert settings[8] == 1                                           # SETTINGS_ENABLE_CONNECT_PROTOCOL
    ws = client.websocket("/ws/chat", headers=[("origin", "https://localhost"), ("user-agent", "h2-ws-test")])
    assert ws.status == 200 and ws.reset is None
    assert ws.header("sec-websocket-accept") is None                  # checked by us, not relayed
    for i in range(20):
        client.ws_send(ws.id, b"message %d" % i)
        assert client.ws_recv(ws.id) == (2, b"message %d" % i)
    big = bytes(range(256)) * 4096 * 2                                # 2 MiB: many windows both ways
    client.ws_send(ws.id, big)
    assert client.ws_recv(ws.id, timeout=20) == (2, big)
    request = echo.requests[-1]
    assert request.path == "/chat" and request.headers["Upgrade"].lower() == "websocket"
    assert request.headers["X-Forwarded-Proto"] == "https" and request.headers["Origin"] == "https://localhost"
    totals = wait_for(lambda: (t := proxy.status()["totals"])["tunnels"] == 1 and t, 5, what="the scoreboard")
    assert totals["h2_streams"] == 1 and totals["h2_connections"] == 1        # published every 0.5 s
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert re.search(r"^mpm_worker_http2_streams\{.*\} 1\.0$", metrics, re.M), metrics[-2000:]
    client.ws_send(ws.id, b"\x03\xe8", opcode=8)                      # close 1000; the echo server answers it
    assert client.ws_recv(ws.id)[0] == 8
    client.send_data(ws.id, b"", end=True)
    client.wait(lambda: ws.ended, 10, "END_STREAM from the proxy")
    assert ws.reset is None
    line = wait_for(lambda: [x for x in proxy.access_lines() if '"CONNECT /ws/chat HTTP/2.0" 200' in x], 10)[0]
    assert 'end="closed"' in line and "tunnel_in=" in line
    assert int(line.split("tunnel_out=")[1].split()[0]) >= len(big)
    assert client.get("/ws/other").status in (400, 426)               # the connection serves on
    client.close()


@pytest.mark.timeout(60)
def test_half_close_both_ways_is_end_stream(env):
    proxy, _, raw = env
    client = H2Client(proxy.port)
    ws = client.websocket("/raw/halfclose", headers=[("sec-websocket-protocol", "chat")])
    assert ws.status == 200 and ws.header("sec-websocket-protocol") == "chat"
    client.wait(lambda: ws.ended, 10, "the backend's half-close as END_STREAM")
    assert bytes(ws.body) == b"hello"
    client.send_data(ws.id, b"after your close", end=True)           # our half is still open
    assert raw.event("halfclose").wait(10)
    assert raw.results["halfclose"] == b"after your close"
    head = raw.heads[-1]
    assert header_values(head, "Sec-WebSocket-Key") and not header_values(head, "Content-Length")
    client.close()


@pytest.mark.timeout(60)
def test_refusals_aborts_and_idle_timeout(env):
    proxy, echo, raw = env
    client = H2Client(proxy.port)
    assert client.websocket("/nows/x").status == 405                 # the route does not tunnel websocket
    assert client.websocket("/raw/plain").status == 502              # answered without switching
    assert client.websocket("/raw/badaccept").status == 502          # a Sec-WebSocket-Accept not for our key
    # RFC 8441: a client's own key is not used (§5), and :protocol is one protocol name (§4).  The
    # key went along: the backend got two (a 502), or with "websocket, h2c" none of ours and
    # no Accept checked (review 2026-12-04-h2-downgrade #4).
    assert client.websocket("/ws/keyed", headers=[("sec-websocket-key", "Y2xpZW50LWNob3Nlbi1rZXk=")]).status == 200
    assert len(echo.requests[-1].headers.get_all("Sec-WebSocket-Key")) == 1
    stream_id = client.request("CONNECT", "/ws/listed", [(":protocol", "websocket, h2c")], end=False)
    assert client.response(stream_id).reset == 1                     # PROTOCOL_ERROR
    wait_for(lambda: [x for x in proxy.access_lines() if '"CONNECT /nows/x HTTP/2.0" 405' in x], 5)
    # RST_STREAM from the client closes the backend connection.
    raw.event("echo-eof").clear()
    ws = client.websocket("/raw/echo")
    client.send_data(ws.id, b"raw bytes")                            # the raw backend echoes bytes
    client.wait(lambda: bytes(ws.body) == b"raw bytes", 10, "the echo")
    client.conn.reset_stream(ws.id, CANCEL)
    client.flush()
    assert raw.event("echo-eof").wait(10)
    # The route's timeout is the tunnel's idle timeout: the stream is reset, the line says why.
    idle = client.websocket("/idle/quiet")
    client.response(idle.id, timeout=5)
    assert idle.reset == CONNECT_ERROR
    wait_for(lambda: [x for x in proxy.access_lines() if '"CONNECT /idle/quiet HTTP/2.0" 200' in x
                      and 'end="idle timeout"' in x], 10)
    assert client.get("/raw/still-serving").status in (200, 502)
    client.close()


@pytest.mark.timeout(60)
def test_data_sent_before_the_answer_reaches_the_backend(env):
    """A client may send DATA right behind its extended CONNECT: it waits for the tunnel."""
    proxy, _, raw = env
    client = H2Client(proxy.port)
    stream_id = client.request("CONNECT", "/raw/echo", [(":protocol", "websocket"), ("sec-websocket-version", "13")],
                               end=False)
    client.send_data(stream_id, b"early bytes")
    stream = client.streams[stream_id]
    client.wait(lambda: bytes(stream.body) == b"early bytes", 10, "the early bytes' echo")
    assert stream.status == 200
    client.close()


@pytest.mark.timeout(60)
def test_thirty_websockets_on_one_connection(env):
    proxy, _, _ = env
    client = H2Client(proxy.port)
    sockets = [client.websocket(f"/ws/many/{i}") for i in range(30)]
    assert all(ws.status == 200 for ws in sockets)
    for round_ in range(3):
        for ws in sockets:
            client.ws_send(ws.id, b"round %d" % round_)
        for ws in sockets:
            assert client.ws_recv(ws.id) == (2, b"round %d" % round_)
    client.close()
    wait_for(lambda: proxy.status()["totals"]["tunnels"] == 0, 10, what="the tunnels to close")
