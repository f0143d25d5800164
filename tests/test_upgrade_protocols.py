"""Generic `Upgrade` tunnels (issue #4): a custom protocol when the route allows it, plain
HTTP when it does not, and the route's `upgrade: ANY` and `upgrade: NONE` (Apache's
mod_proxy_wstunnel meanings).  Raw sockets on both sides: after the 101, any bytes.

The raw backend answers an upgrade request with a 101 for the protocol asked for (the
last one offered), sends a greeting, then echoes; a request without Upgrade gets a
plain 200 naming what it saw."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from proxyproc import running_proxy
from rawbackend import RawBackend, RawConn, echo
from rawsock import header_values, http_response_body, read_head, recv_exact, status_of, tokens
from wsutil import switch_response, upgrade_of

GREETING = b"\x00\xffgreeting from the other protocol\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"


def _rogue_101(conn: RawConn, response: bytes) -> None:
    conn.send(response + GREETING)
    echo(conn)


# A misbehaving 101, chosen by the last path segment; any other path gets a correct backend.
ROGUES = {
    "/rogue": lambda head: switch_response("myproto"),            # a 101 although nobody asked for one
    "/no-upgrade-header":                                           # a 101 that does not say what it switches to
        lambda head: b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
    "/switch-to-other": lambda head: switch_response("other"),    # a protocol the client did not offer
}


def _backend(conn: RawConn) -> None:
    """A correct backend: 101 to the last protocol offered, a greeting, then echo; a plain 200
    (and close) when no upgrade is asked for.  The paths in ROGUES get a misbehaving 101."""
    head = conn.read_head()
    rogue = next((make for suffix, make in ROGUES.items() if head.target.endswith(suffix)), None)
    if rogue is not None:
        _rogue_101(conn, rogue(head))
        return
    asked = upgrade_of(head.raw)
    if asked is None or "upgrade" not in tokens(head.raw, "Connection"):
        body = b"plain " + head.target.encode("latin-1")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                  % (len(body), body))
        return
    chosen = asked.split(",")[-1].strip()
    conn.send(switch_response(chosen, head.raw))
    conn.send(GREETING)
    echo(conn)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    raw = RawBackend(_backend, timeout=20)
    to = f"http://127.0.0.1:{raw.port}"
    routes = [
        {"path": "/allowed/", "to": to + "/allowed/", "upgrade": ["myproto", "other"]},
        {"path": "/refused/", "to": to + "/refused/"},                       # websocket only (the default)
        {"path": "/any/", "to": to + "/any/", "upgrade": "ANY"},
        {"path": "/none/", "to": to + "/none/", "upgrade": "NONE"},
    ]
    try:
        with running_proxy(tmp_path_factory.mktemp("upgrade-protocols"), routes) as proxy:
            yield proxy, raw
    finally:
        raw.close()


def _request(path: str, upgrade: str | None, connection: str = "Upgrade") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: proxy.test"]
    if upgrade is not None:
        lines += [f"Upgrade: {upgrade}", f"Connection: {connection}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _seen(raw: RawBackend, target: str) -> bytes:
    return next(h for h in raw.heads if h.split(b" ", 2)[1] == target.encode())


def _check_tunnel(sock: socket.socket, buf: bytearray, size: int = 1 << 20) -> None:
    """After the 101: the greeting arrives, then arbitrary bytes echo both ways."""
    assert recv_exact(sock, len(GREETING), buf) == GREETING
    payload = os.urandom(size) + b"\r\n\r\nGET / HTTP/1.1\r\n\r\n" + bytes(range(256))
    received = bytearray()
    reader_error = []

    def reader():
        try:
            received.extend(recv_exact(sock, len(payload), buf))
        except BaseException as exc:
            reader_error.append(exc)
    thread = threading.Thread(target=reader)
    thread.start()
    sock.sendall(payload)
    thread.join(20)
    assert not reader_error, reader_error
    assert bytes(received) == payload


def _open(proxy, path: str, upgrade: str | None, connection: str = "Upgrade"):
    sock = proxy.connect(timeout=10)
    sock.sendall(_request(path, upgrade, connection))
    head, buf = read_head(sock)
    return sock, head, buf


# == a list of protocols ===========================================================================
def test_custom_upgrade_is_tunnelled_when_the_route_allows_it(env):
    proxy, raw = env
    sock, head, buf = _open(proxy, "/allowed/chat?v=1", "myproto")
    with sock:
        assert status_of(head) == 101, head
        assert header_values(head, "Upgrade") == ["myproto"]
        assert "upgrade" in tokens(head, "Connection")
        _check_tunnel(sock, buf)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""          # the backend's echo ended at our EOF and it closed
    seen = _seen(raw, "/allowed/chat?v=1")
    assert header_values(seen, "Upgrade") == ["myproto"]
    assert "upgrade" in tokens(seen, "Connection")


@pytest.mark.parametrize("asked", ["MyProto", "myproto/2.0", "other", "unknown, other"])
def test_allowed_protocol_names_match_case_insensitively_and_with_versions(env, asked):
    proxy, raw = env
    path = f"/allowed/variant-{asked.replace(' ', '').replace(',', '_').replace('/', '_')}"
    sock, head, buf = _open(proxy, path, asked)
    with sock:
        assert status_of(head) == 101, head
        assert header_values(head, "Upgrade") == [asked.split(",")[-1].strip()]
        _check_tunnel(sock, buf, 4096)
    # Only the protocols the route allows reach the backend (what it may switch to).
    assert header_values(_seen(raw, path), "Upgrade") == [asked.split(",")[-1].strip()]


@pytest.mark.parametrize("route,asked", [("/refused/", "myproto"), ("/allowed/", "websocket")])
def test_refused_upgrade_is_forwarded_as_plain_http(env, route, asked):
    proxy, raw = env
    path = f"{route}plain-{asked}"
    sock, head, buf = _open(proxy, path, asked)
    with sock:
        assert status_of(head) == 200, head
        assert http_response_body(sock, head, buf) == b"plain " + path.encode()
        assert not header_values(head, "Upgrade")
        # Still plain HTTP on the same connection.
        sock.sendall(_request(f"{route}after-{asked}", None))
        head2, buf = read_head(sock, buf)
        assert status_of(head2) == 200, head2
        assert http_response_body(sock, head2, buf) == f"plain {route}after-{asked}".encode()
    seen = _seen(raw, path)
    assert not header_values(seen, "Upgrade"), seen
    assert "upgrade" not in tokens(seen, "Connection"), seen


def test_backend_101_to_an_upgrade_nobody_agreed_is_a_502(env):
    """The backend switching protocols on a request sent without Upgrade must not
    become a tunnel (Apache: "backend switched protocols without upgrade" -> 502)."""
    proxy, _ = env
    sock, head, buf = _open(proxy, "/refused/rogue", "myproto")
    with sock:
        assert status_of(head) == 502, head
        assert GREETING not in bytes(buf)


# == ANY ===========================================================================================
@pytest.mark.parametrize("asked", ["foo/2", "h2c", "websocket"])
def test_any_tunnels_whatever_the_client_asked_for(env, asked):
    proxy, raw = env
    path = f"/any/{asked.replace('/', '_')}"
    sock, head, buf = _open(proxy, path, asked)
    with sock:
        assert status_of(head) == 101, head
        assert header_values(head, "Upgrade") == [asked]
        _check_tunnel(sock, buf, 65536)
    seen = _seen(raw, path)
    assert header_values(seen, "Upgrade") == [asked]
    assert "upgrade" in tokens(seen, "Connection")


def test_any_without_an_upgrade_is_plain_http(env):
    proxy, raw = env
    sock, head, buf = _open(proxy, "/any/no-upgrade", None)
    with sock:
        assert status_of(head) == 200, head
        assert http_response_body(sock, head, buf) == b"plain /any/no-upgrade"
    assert not header_values(_seen(raw, "/any/no-upgrade"), "Upgrade")


# == NONE ==========================================================================================
def test_none_sends_a_plain_request_as_a_websocket_upgrade_and_tunnels(env):
    proxy, raw = env
    sock, head, buf = _open(proxy, "/none/plain-client?x=1", None)
    with sock:
        assert status_of(head) == 101, head
        _check_tunnel(sock, buf, 65536)
    seen = _seen(raw, "/none/plain-client?x=1")
    assert [v.lower() for v in header_values(seen, "Upgrade")] == ["websocket"]
    assert "upgrade" in tokens(seen, "Connection")


def test_none_keeps_the_protocol_the_client_asked_for(env):
    proxy, raw = env
    sock, head, buf = _open(proxy, "/none/custom", "myproto")
    with sock:
        assert status_of(head) == 101, head
        assert header_values(head, "Upgrade") == ["myproto"]
        _check_tunnel(sock, buf, 65536)
    assert header_values(_seen(raw, "/none/custom"), "Upgrade") == ["myproto"]


def test_backend_101_to_a_protocol_the_client_did_not_offer_is_a_502(env):
    """RFC 9110 §7.8: the server switches to one of the protocols the client listed."""
    proxy, _ = env
    sock, head, buf = _open(proxy, "/allowed/switch-to-other", "myproto")
    with sock:
        assert status_of(head) == 502, head
        assert GREETING not in bytes(buf)


def test_backend_101_without_an_upgrade_header_is_a_502(env):
    """RFC 9110 §15.2.2: a 101 MUST say, in Upgrade, which protocol it switches to."""
    proxy, _ = env
    sock, head, buf = _open(proxy, "/allowed/no-upgrade-header", "myproto")
    with sock:
        assert status_of(head) == 502, head
        assert GREETING not in bytes(buf)


def test_upgrade_header_without_connection_upgrade_is_plain_http(env):
    """`Upgrade` not named in `Connection` is not an upgrade request; Upgrade is
    hop-by-hop and does not reach the backend."""
    proxy, raw = env
    sock, head, buf = _open(proxy, "/allowed/no-connection-token", "myproto", connection="keep-alive")
    with sock:
        assert status_of(head) == 200, head
        assert http_response_body(sock, head, buf) == b"plain /allowed/no-connection-token"
    seen = _seen(raw, "/allowed/no-connection-token")
    assert not header_values(seen, "Upgrade"), seen
