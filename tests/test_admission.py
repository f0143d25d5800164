"""Admission of new connections (review 2026-12-03-tls-h2 #4, #6).

#4: every arrival (TLS handshake, h2c preface sniffer, PROXY header reader) carries its own
`since`; a full worker closes the oldest for room, whatever timeout its deadline came from,
and never one accepted in the current loop turn.

#6: `per_client.connections` is checked before any handshake work: at accept on TLS and h2c
listeners (the count rides with the handshake or the preface sniffer and is given back if it
fails), after the PROXY header where one comes first (the address it names is the client).

One worker with a tiny ThreadsPerChild makes "full" cheap to reach."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time

import pytest
import trustme
from backends import HttpBackend
from httpclient import read_raw_response
from proxyproc import Proxy
from support import free_port, wait_for

from worker.proxyproto import header

MPM_SMALL = {"threads_per_child": 4, "max_request_workers": 4, "server_limit": 1}


def _closed(sock: socket.socket, timeout: float = 0.05) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_silent_h2c_connections_are_closed_for_room_oldest_first(proxy_factory, http_backend):
    """r02: an h2c sniffer's deadline is accept + client_header, which made it look younger
    than it was (deadline - handshake): the full worker closed none and stopped accepting."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1, mpm=MPM_SMALL,
                          timeouts={"client_header": 20, "handshake": 10})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    silent = []
    try:
        for _ in range(4):
            silent.append(proxy.connect())
            time.sleep(0.01)                    # one loop turn apart: a clear order
        wait_for(lambda: proxy.status()["totals"]["connections"] == 4, 5, 0.05, "a full worker")
        started = time.monotonic()
        with proxy.connect() as sock:
            sock.sendall(b"GET /new HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_raw_response(sock, timeout=3).status == 200
        assert time.monotonic() - started < 1.0
        assert [_closed(sock) for sock in silent] == [True, False, False, False]
    finally:
        for sock in silent:
            sock.close()


def test_an_arrival_is_not_closed_for_room_in_the_turn_it_was_accepted(proxy_factory, http_backend):
    """client_header < handshake made an h2c sniffer look older than it was: with the worker
    stopped, A connects to the h2c listener and sends its request, B connects to a second
    listener; resumed, the worker accepts both in one loop turn, and B's room must not be
    made by closing A before its request was looked at (A is served, then B)."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                          mpm={"threads_per_child": 1, "max_request_workers": 1, "server_limit": 1},
                          timeouts={"client_header": 1, "handshake": 10})
    other = free_port()
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}, f"127.0.0.1:{other}"]
    proxy.start()
    pid = proxy.worker_pids()[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        first = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        first.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        second = socket.create_connection(("127.0.0.1", other), timeout=5)
        second.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
    with first, second:
        assert read_raw_response(first, timeout=3).status == 200
        assert read_raw_response(second, timeout=3).status == 200


# == per-client connections before the TLS handshake (#6) ========================================
HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"     # a ClientHello's first bytes, then nothing


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def limited(tmp_path_factory, ca):
    """One worker, per_client.connections 2, and three listeners: TLS, PROXY then TLS, h2c."""
    directory = tmp_path_factory.mktemp("admission")
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "cert.key")
    cert.private_key_pem.write_to_path(key_path)
    with open(cert_path, "wb") as f:
        for pem in cert.cert_chain_pems:
            f.write(pem.bytes())
    tls = {"cert": cert_path, "key": key_path}
    backend = HttpBackend()
    proxy = Proxy(directory / "proxy", [{"path": "/", "to": backend.url + "/"}], workers=1,
                  limits={"per_client": {"connections": 2}}, timeouts={"handshake": 10, "client_header": 10})
    ports = {"tls": proxy.port, "proxy_tls": free_port(), "h2c": free_port()}
    proxy.config["listen"] = [{"address": f"127.0.0.1:{ports['tls']}", "tls": tls, "http2": False},
                              {"address": f"127.0.0.1:{ports['proxy_tls']}", "tls": tls, "http2": False,
                               "proxy_protocol": True},
                              {"address": f"127.0.0.1:{ports['h2c']}", "http2": "h2c"}]
    try:
        proxy.start()
        yield proxy, ports
    finally:
        proxy.stop()
        backend.close()


def _client_context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _client_hello() -> bytes:
    """A whole ClientHello, as a TLS client's first flight."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def _open(port: int, source: str, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    if first:
        sock.sendall(first)
    time.sleep(0.03)                # one loop turn apart: a clear order
    return sock


def _answer(port: int, source: str, first: bytes) -> bytes:
    """What the proxy sends back to `first` within a second, until it closes (b"": nothing)."""
    data = b""
    try:
        with _open(port, source) as sock:
            sock.sendall(first)
            sock.settimeout(1.0)
            while chunk := sock.recv(4096):
                data += chunk
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        pass
    return data


def _tls_get(port: int, source: str, ca, preamble: bytes = b"") -> tuple[ssl.SSLSocket, int]:
    """A keep-alive TLS connection that got an answer: (its socket, the status)."""
    raw = _open(port, source, preamble)
    sock = _client_context(ca).wrap_socket(raw, server_hostname="localhost")
    sock.sendall(b"GET /tls HTTP/1.1\r\nHost: t\r\n\r\n")
    return sock, read_raw_response(sock, timeout=5).status


def _active(proxy) -> int:
    return proxy.status()["clients"]["active"]


def test_tls_connections_over_the_limit_are_closed_before_the_handshake(limited, ca):
    proxy, ports = limited
    port = ports["tls"]
    refused_before = proxy.status()["clients"]["refused_connections"]
    stalled = [_open(port, "127.0.0.5", HELLO_START) for _ in range(2)]
    opened = []
    try:
        # At its limit: a whole ClientHello gets a reset, no ServerHello (no key exchange done).
        assert [_answer(port, "127.0.0.5", _client_hello())[:3] for _ in range(3)] == [b""] * 3
        assert _active(proxy) == 1               # 127.0.0.5, counted while it handshakes
        assert proxy.status()["clients"]["refused_connections"] - refused_before == 3
        assert not any(_closed(sock) for sock in stalled)          # still handshaking
        sock, status = _tls_get(port, "127.0.0.9", ca)             # another client is served
        opened.append(sock)
        assert status == 200
        sock.close()
        # Handshakes that fail (the client leaves, or sends garbage) give their counts back.
        for sock in stalled:
            sock.close()
        assert _answer(port, "127.0.0.5", b"GARBAGE\r\n\r\n") == b""
        assert proxy.status()["clients"]["refused_connections"] - refused_before == 3    # it failed, unrefused
        wait_for(lambda: _active(proxy) == 0, 3, 0.05, "no client with anything open")
        for _ in range(2):                       # so 127.0.0.5 has both its places again
            sock, status = _tls_get(port, "127.0.0.5", ca)
            opened.append(sock)
            assert status == 200
        assert _answer(port, "127.0.0.5", _client_hello()) == b""
    finally:
        for sock in stalled + opened:
            sock.close()
    wait_for(lambda: _active(proxy) == 0, 3, 0.05, "no client with anything open")


def test_behind_a_proxy_header_the_named_client_is_counted_before_the_handshake(limited, ca):
    proxy, ports = limited
    port = ports["proxy_tls"]
    named = header(1, b"192.0.2.7", 4000, b"127.0.0.1", port)
    stalled = [_open(port, "127.0.0.1", named + HELLO_START) for _ in range(2)]
    try:
        assert _answer(port, "127.0.0.1", named + _client_hello())[:3] == b""
        assert _active(proxy) == 1               # 192.0.2.7, counted while it handshakes
        other, status = _tls_get(port, "127.0.0.1", ca, header(1, b"192.0.2.8", 4000, b"127.0.0.1", port))
        other.close()
        assert status == 200
    finally:
        for sock in stalled:
            sock.close()
    wait_for(lambda: _active(proxy) == 0, 3, 0.05, "no client with anything open")


def _open_or_reset(port: int, source: str) -> socket.socket | None:
    """None: the reset of a connection refused at accept came before connect() returned (a
    loaded machine makes that possible)."""
    try:
        return _open(port, source)
    except ConnectionResetError:
        return None


def test_h2c_connections_over_the_limit_are_closed_before_their_first_bytes(limited):
    proxy, ports = limited
    silent = [_open_or_reset(ports["h2c"], "127.0.0.5") for _ in range(3)]
    try:
        assert [sock is None or _closed(sock, 0.5) for sock in silent] == [False, False, True]
    finally:
        for sock in silent:
            if sock is not None:
                sock.close()
    wait_for(lambda: _active(proxy) == 0, 3, 0.05, "no client with anything open")
