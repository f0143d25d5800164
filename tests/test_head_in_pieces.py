"""A request head whose first read is exactly three bytes is served, not refused as a
malformed request line.

The worker's fast path takes a read that ends with the head's end and holds no other as a
whole head: `find(CRLFCRLF) == n - 4`.  For a three-byte read with no CRLFCRLF, find's -1
equals n - 4, so "GET" (or "POS" of a POST) was parsed as a complete head and answered 400
"malformed request line" (found by review 2026-12-03-handover while sending heads in random
pieces across reloads: about 1 request in 60).  nginx, HAProxy and Apache read a head in
whatever pieces it comes.

Each piece is sent once the proxy has read the one before: the proxy's side of the
connection shows an empty receive queue in /proc/net/tcp."""

from __future__ import annotations

import socket

import pytest
from rawbackend import RawBackend, respond, serve_simple
from rawsock import http_response_body, read_head, status_of
from support import wait_for


@pytest.fixture
def backend():
    server = RawBackend(lambda conn: serve_simple(conn, lambda head, body: respond(200, head.target.encode() + body)))
    yield server
    server.close()


def _proxy_read_all(sock: socket.socket, proxy_port: int) -> bool:
    """The proxy's end of `sock` has nothing left in its receive queue."""
    client_port = sock.getsockname()[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == proxy_port and int(remote.split(":")[1], 16) == client_port:
                return int(queues.split(":")[1], 16) == 0
    return False


def _send_in_pieces(sock: socket.socket, proxy_port: int, *pieces: bytes) -> None:
    for piece in pieces:
        sock.sendall(piece)
        wait_for(lambda: _proxy_read_all(sock, proxy_port), 5, 0.01, "the proxy to read the piece")


def _answer(sock: socket.socket) -> tuple:
    head, buf = read_head(sock)
    return status_of(head), http_response_body(sock, head, buf)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("first", [b"GET", b"POS"])
def test_a_three_byte_first_read_is_part_of_a_head(proxy_factory, backend, first):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    request = (b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok" if first == b"POS"
               else b"GET /g HTTP/1.1\r\nHost: t\r\n\r\n")
    expected = (200, b"/pok") if first == b"POS" else (200, b"/g")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        _send_in_pieces(sock, proxy.port, request[:3], request[3:])             # a new connection
        assert _answer(sock) == expected
        _send_in_pieces(sock, proxy.port, request[:3], request[3:])             # a keep-alive one
        assert _answer(sock) == expected
