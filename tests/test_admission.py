"""Admission of new connections (review 2026-12-03-tls-h2 #4, #6).

#4: every arrival (TLS handshake, h2c preface sniffer, PROXY header reader) carries its own
`since`; a full worker closes the oldest for room, whatever timeout its deadline came from,
and never one accepted in the current loop turn.

One worker with a tiny ThreadsPerChild makes "full" cheap to reach."""

from __future__ import annotations

import os
import signal
import socket
import time

from httpclient import read_raw_response
from support import free_port, wait_for

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
